"""``POST /webhooks/aws``: AWS-native failure events from EventBridge.

- ECS deployment failures (``ECS Deployment State Change`` / ``ECS Service Action``,
  ``SERVICE_DEPLOYMENT_FAILED``), CodeDeploy failures (``FAILURE``, ``STOP``) and
  CloudWatch alarm state changes.
- Two entrances, each with its own credential: an EventBridge API destination with
  ``Authorization: Bearer <alarm token>`` (``alarm-token``), or an SNS subscription of
  the EventBridge rule's topic, admitted by its signature from a listed topic
  (``sns:<topic arn>``). The credential is checked before the body is parsed.
- Do not fight the platform: when ECS's circuit breaker or CodeDeploy's automatic
  rollback handles the failure, the receiver watches it (``flows.platform_watch``)
  instead of starting a rollback of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments import aws_events, events
from deployments.deploy_success import DeploySucceeded
from deployments.receiver.bake import bake_answer
from deployments.receiver.bodies import parse_json
from deployments.receiver.cloudwatch import ALARM_CREDENTIAL, admit, inner_message, sns_answer
from deployments.receiver.context import Context
from deployments.receiver.errors import error, unavailable
from flows.launch import printable
from flows.platform_watch import Plan, PlatformWatch
from rollback.errors import RollbackError
from rollback.models import iso, utcnow

log = logging.getLogger("deployments.receiver")


def router(ctx: Context, watch: PlatformWatch) -> APIRouter:
    api = APIRouter()

    @api.post("/webhooks/aws", status_code=202)
    async def aws_event(request: Request) -> JSONResponse:
        """An EventBridge event (ECS, CodeDeploy, CloudWatch alarm): API destination
        (alarm token) or SNS (signed, from a listed topic)."""
        body, message = await admit(ctx, request, "AWS event")
        if message is not None:
            return await from_sns(ctx, watch, message)
        answer = await handle(ctx, watch, parse_json(body), ALARM_CREDENTIAL)
        if answer is None:
            return error(400, "not an EventBridge event (source, detail-type, detail)")
        return answer

    return api


async def from_sns(ctx: Context, watch: PlatformWatch, message: Mapping[str, str]) -> JSONResponse:
    """An SNS message of the EventBridge rule's topic: verified, then handled."""
    answer = await sns_answer(ctx, message)
    if answer is not None:
        return answer
    answer = await handle(ctx, watch, inner_message(message), f"sns:{message['TopicArn']}")
    if answer is None:
        return JSONResponse(
            {"status": "ignored", "reason": "SNS message is not an EventBridge event"}
        )
    return answer


async def handle(
    ctx: Context, watch: PlatformWatch, payload: Any, credential: str
) -> JSONResponse | None:
    """The answer to an authenticated EventBridge event; None when it is not one."""
    if not aws_events.is_aws_event(payload):
        return None
    if payload.get("detail-type") == "CloudWatch Alarm State Change":
        change = events.alarm_change(payload)
        if change is None:
            return None
        return await ctx.act(events.alarm_request(ctx.config.alarms, change), credential)
    mapped = aws_events.aws_event(payload, ctx.config)
    if isinstance(mapped, events.Ignored):
        log.info("ignored: %s", printable(mapped.reason, 300))
        return JSONResponse({"status": "ignored", "reason": mapped.reason})
    if isinstance(mapped, aws_events.DeployCompleted):
        return await completed(ctx, mapped, credential)
    return await failure(ctx, watch, mapped, credential)


async def completed(
    ctx: Context, done: aws_events.DeployCompleted, credential: str
) -> JSONResponse:
    """A successful ECS deployment starts its bake (when verification is configured)."""
    key = f"aws:ecs:{done.environment}/{done.service}/{done.deployment_id or done.event_id}"
    success = DeploySucceeded(
        environment=done.environment,
        service=done.service,
        deployed_at=done.at or str(iso(utcnow())),
        version=None,
        key=f"{key}#completed",
    )
    return await bake_answer(ctx, success, credential)


async def failure(
    ctx: Context, watch: PlatformWatch, failed: aws_events.PlatformFailure, credential: str
) -> JSONResponse:
    """A platform failure: watched when the platform rolls back by itself (ECS circuit
    breaker, CodeDeploy automatic rollback), else a rollback request of ours."""
    known = ctx.intake.seen(failed.source_event_id)
    if known is not None:
        return await ctx.act(failed.request(), credential)  # answered from memory
    try:
        plan = await run_in_threadpool(watch.plan, failed)
        if plan is None:
            return await ctx.act(failed.request(), credential)
        started = await run_in_threadpool(watch.start, plan, credential)
    except RollbackError as exc:
        log.warning(
            "could not read %s for %s/%s: %s",
            failed.platform,
            failed.environment,
            failed.service,
            printable(exc, 300),
        )
        raise unavailable(f"could not read the {failed.platform} deployment; retry later") from None
    if started.status == "duplicate":
        return JSONResponse({"status": "duplicate", "audit_id": started.watch_id})
    return watching(plan, started.watch_id)


def watching(plan: Plan, watch_id: str) -> JSONResponse:
    """202: the platform rolls back by itself; we watch it as ``watch_id``."""
    failed = plan.failure
    who = "ECS circuit breaker" if failed.platform == "ecs" else "CodeDeploy automatic rollback"
    log.info(
        "%s handles %s/%s (%s): watching as %s",
        who,
        failed.environment,
        failed.service,
        printable(failed.source_event_id),
        watch_id,
    )
    return JSONResponse(
        {
            "status": "watching",
            "watch_id": watch_id,
            "failed_version": plan.failed,
            "reason": (
                f"{who} rolls {failed.environment}/{failed.service} back by itself; "
                f"a rollback is requested only if it has not completed within "
                f"{plan.timeout_s:g}s"
            ),
        },
        status_code=202,
    )
