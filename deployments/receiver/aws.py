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
from deployments.receiver.bodies import parse_json, read_body
from deployments.receiver.cloudwatch import (
    ALARM_CREDENTIAL,
    NO_CREDENTIAL,
    alarm_token_refusal,
    sns_answer,
    sns_message,
)
from deployments.receiver.context import Context
from deployments.receiver.errors import Refused, error, unavailable
from flows.launch import printable
from flows.platform_watch import PlatformWatch
from rollback.errors import RollbackError
from rollback.models import iso, utcnow

log = logging.getLogger("deployments.receiver")


def router(ctx: Context, watch: PlatformWatch) -> APIRouter:
    api = APIRouter()

    @api.post("/webhooks/aws", status_code=202)
    async def aws_event(request: Request) -> JSONResponse:
        """An EventBridge event (ECS, CodeDeploy, CloudWatch alarm): API destination
        (alarm token) or SNS (signed, from a listed topic)."""
        body = await read_body(request, ctx.hooks.max_body_bytes)
        headers = request.headers
        if headers.get("x-amz-sns-message-type") or not headers.get("authorization"):
            message = sns_message(body)
            if message is None:
                return error(401, NO_CREDENTIAL)
            return await sns(message)
        refusal = alarm_token_refusal(ctx, headers.get("authorization"))
        if refusal:
            ctx.refusals.note("AWS event refused: %s", refusal)
            return error(401, refusal)
        payload = parse_json(body)
        answer = await handle(payload, ALARM_CREDENTIAL)
        if answer is None:
            return error(400, "not an EventBridge event (source, detail-type, detail)")
        return answer

    async def sns(message: Mapping[str, str]) -> JSONResponse:
        answer = await sns_answer(ctx, message)
        if answer is not None:
            return answer
        try:
            inner = parse_json((message.get("Message") or "").encode())
        except Refused:
            inner = None
        answer = await handle(inner, f"sns:{message['TopicArn']}")
        if answer is None:
            return JSONResponse(
                {"status": "ignored", "reason": "SNS message is not an EventBridge event"}
            )
        return answer

    async def handle(payload: Any, credential: str) -> JSONResponse | None:
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
            return await completed(mapped, credential)
        return await failure(mapped, credential)

    async def completed(done: aws_events.DeployCompleted, credential: str) -> JSONResponse:
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

    async def failure(failed: aws_events.PlatformFailure, credential: str) -> JSONResponse:
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
            raise unavailable(
                f"could not read the {failed.platform} deployment; retry later"
            ) from None
        if started.status == "duplicate":
            return JSONResponse({"status": "duplicate", "audit_id": started.watch_id})
        who = "ECS circuit breaker" if failed.platform == "ecs" else "CodeDeploy automatic rollback"
        log.info(
            "%s handles %s/%s (%s): watching as %s",
            who,
            failed.environment,
            failed.service,
            printable(failed.source_event_id),
            started.watch_id,
        )
        return JSONResponse(
            {
                "status": "watching",
                "watch_id": started.watch_id,
                "failed_version": plan.failed,
                "reason": (
                    f"{who} rolls {failed.environment}/{failed.service} back by itself; "
                    f"a rollback is requested only if it has not completed within "
                    f"{plan.timeout_s:g}s"
                ),
            },
            status_code=202,
        )

    return api
