"""The webhook receiver: signed GitHub and CloudWatch/SNS webhooks and the REST rollback
API, turned into rollback flow runs through one ``Intake``.

``create_app(config, launcher)`` builds the FastAPI app; ``rollback serve`` runs it.
Every refusal is a JSON ``{"status": "error", "message": ...}``; secrets are read from
the environment per request and never logged or returned.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments import events
from deployments.launcher import Acceptance, Intake, Launcher
from deployments.signatures import SnsVerifier, verify_bearer, verify_github
from rollback.config import Config
from rollback.config.webhooks import WebhooksConfig
from rollback.errors import ConfigError, RollbackError
from rollback.models import RollbackRequest, utcnow
from rollback.runtime import Runtime

log = logging.getLogger(__name__)

SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


class RollbackBody(BaseModel):
    """``POST /rollback`` (documentation of the body; parsed by hand for clear errors)."""

    environment: str
    rollback_type: str = Field(description="echoed back; e.g. quick or full")
    user_id: str
    reason: str
    image_tag: str | None = Field(default=None, description="omitted: the last good version")
    service: str | None = Field(default=None, description="default: the environment's only service")
    confirmation: str | None = Field(default=None, description="for protected environments")
    dry_run: bool = False


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(400, f"body is not valid JSON: {exc.__class__.__name__}") from None


def create_app(
    config: Config,
    launcher: Launcher,
    *,
    runtime: Runtime | None = None,
    sns_verifier: SnsVerifier | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The receiver app. ``sns_verifier`` and ``environ`` are injectable for tests (a
    verifier that accepts a local certificate URL; generated secrets)."""
    problems = events.route_errors(config)
    if problems:
        raise ConfigError(f"{config.source or '<config>'}: " + "; ".join(problems))
    hooks = config.webhooks or WebhooksConfig()
    env: Mapping[str, str] = os.environ if environ is None else environ
    rt = runtime or Runtime(config)
    intake = Intake(config, launcher, rt)
    verifier = sns_verifier or SnsVerifier()
    app = FastAPI(
        title="rollback receiver",
        description="Signed webhooks and the REST API that start rollbacks.",
        version="1",
    )
    app.state.intake = intake
    refusals = _RefusalLog()

    def secret(name: str | None) -> str | None:
        return env.get(name) if name else None

    def bearer_ok(request: Request) -> bool:
        return verify_bearer(secret(hooks.api_token_env), request.headers.get("authorization"))

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    async def submit(request: RollbackRequest) -> Acceptance:
        known = intake.seen(request.source_event_id)  # redelivery: answered from memory
        if known:
            return Acceptance("duplicate", known.audit_id, known.flow_run_id, known.monitor_url)
        try:
            return await run_in_threadpool(intake.submit, request)
        except RollbackError as exc:
            log.error(
                "could not start a rollback of %s/%s: %s", request.environment, request.service, exc
            )
            raise _Refused(503, f"could not start the rollback: {exc}") from None

    def answer(mapped: events.Mapped, acceptance: Acceptance | None) -> JSONResponse:
        if isinstance(mapped, events.Ignored):
            return JSONResponse({"status": "ignored", "reason": mapped.reason})
        assert acceptance is not None
        where = f"{mapped.environment}/{mapped.service}"
        if acceptance.status == "in_flight":
            return JSONResponse(
                {
                    "status": "ignored",
                    "reason": f"a rollback of {where} is already in flight",
                    "audit_id": acceptance.audit_id,
                }
            )
        body = {
            "status": "accepted" if acceptance.status == "accepted" else "duplicate",
            "audit_id": acceptance.audit_id,
            "flow_run_id": acceptance.flow_run_id,
            "monitor_url": acceptance.monitor_url,
        }
        return JSONResponse(body, status_code=202 if acceptance.status == "accepted" else 200)

    async def act(mapped: events.Mapped) -> JSONResponse:
        if isinstance(mapped, events.Ignored):
            log.info("ignored: %s", mapped.reason)
            return answer(mapped, None)
        acceptance = await submit(mapped)
        log.info(
            "%s %s/%s from %s: %s (audit %s)",
            mapped.trigger,
            mapped.environment,
            mapped.service,
            mapped.source_event_id,
            acceptance.status,
            acceptance.audit_id,
        )
        return answer(mapped, acceptance)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "mode": launcher.mode}

    @app.post("/webhooks/github", status_code=202)
    async def github(request: Request) -> JSONResponse:
        """A GitHub webhook (``workflow_run``, ``deployment_status``), HMAC-signed."""
        cfg = hooks.github
        if cfg is None:
            return error(404, "GitHub webhooks are not configured (webhooks.github)")
        body = await read_body(request, hooks.max_body_bytes)
        if not verify_github(
            secret(cfg.secret_env), body, request.headers.get("x-hub-signature-256")
        ):
            refusals.note("GitHub delivery %s: bad or missing signature", _delivery(request))
            return error(401, "missing or invalid X-Hub-Signature-256")
        payload = parse_json(body)
        delivery = _delivery(request)
        mapped = events.github_event(request.headers.get("x-github-event"), delivery, payload, cfg)
        if isinstance(mapped, RollbackRequest) and not delivery:
            return error(400, "X-GitHub-Delivery header is required")
        return await act(mapped)

    @app.post("/webhooks/cloudwatch", status_code=202)
    async def cloudwatch(request: Request) -> JSONResponse:
        """A CloudWatch alarm state change: alarm action, EventBridge, or SNS (signed)."""
        body = await read_body(request, hooks.max_body_bytes)
        payload = parse_json(body)
        if _is_sns(request, payload):
            return await _sns(payload)
        if not bearer_ok(request):
            return error(401, "missing or invalid bearer token")
        change = events.alarm_change(payload)
        if change is None:
            return error(400, "not a CloudWatch alarm state change (alarm action or EventBridge)")
        return await act(events.alarm_request(config.alarms, change))

    async def _sns(message: Mapping[str, Any]) -> JSONResponse:
        ok, why = await run_in_threadpool(verifier.verify, message)
        if not ok:
            refusals.note("SNS message %s refused: %s", message.get("MessageId"), why)
            return error(401, f"SNS signature not verified: {why}")
        topics = hooks.sns.topic_arns
        if topics and message.get("TopicArn") not in topics:
            return error(
                403, "SNS topic is not accepted by this receiver (webhooks.sns.topic_arns)"
            )
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            if not hooks.sns.confirm_subscriptions:
                return JSONResponse(
                    {"status": "ignored", "reason": "subscriptions are not confirmed"}
                )
            url = str(message.get("SubscribeURL") or "")
            if not verifier.url_allowed(url):
                return error(400, "SubscribeURL is not an SNS host")
            try:
                await run_in_threadpool(verifier.confirm, url)
            except OSError as exc:
                return error(502, f"could not confirm the subscription: {type(exc).__name__}")
            log.info("confirmed SNS subscription to %s", message.get("TopicArn"))
            return JSONResponse({"status": "confirmed", "topic": message.get("TopicArn")})
        if kind != "Notification":
            return JSONResponse({"status": "ignored", "reason": f"SNS {kind}"})
        change = events.alarm_change(events.sns_alarm_payload(message))
        if change is None:
            return JSONResponse(
                {"status": "ignored", "reason": "SNS message is not a CloudWatch alarm"}
            )
        return await act(
            events.alarm_request(config.alarms, change, f"sns:{message.get('MessageId')}")
        )

    @app.post(
        "/rollback",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RollbackBody.model_json_schema()}},
            }
        },
    )
    async def rollback(request: Request) -> JSONResponse:
        """Start a rollback (the dashboards' API). Bearer token required."""
        if not bearer_ok(request):
            return error(401, "missing or invalid bearer token")
        data = parse_json(await read_body(request, hooks.max_body_bytes))
        req, rollback_type = _api_request(config, data, request.headers.get("idempotency-key"))
        acceptance = await submit(req)
        where = f"{req.environment}/{req.service}"
        if acceptance.status == "in_flight":
            return error(
                409, f"a rollback of {where} is already in flight (audit {acceptance.audit_id})"
            )
        return JSONResponse(
            {
                "status": "success",
                "message": "Rollback initiated"
                if acceptance.status == "accepted"
                else "Rollback already initiated",
                "data": {
                    "audit_id": acceptance.audit_id,
                    "workflow_run_id": acceptance.flow_run_id,
                    "environment": req.environment,
                    "service": req.service,
                    "rollback_type": rollback_type,
                    "image_tag": req.to,
                    "estimated_duration": hooks.estimated_duration,
                    "monitor_url": acceptance.monitor_url,
                },
            }
        )

    @app.get("/deployment/history")
    async def history(
        request: Request, environment: str = "", service: str | None = None, limit: int = 50
    ) -> JSONResponse:
        """Deploys and rollbacks, newest first."""
        if not bearer_ok(request):
            return error(401, "missing or invalid bearer token")
        _known(config, environment, service)
        if not 1 <= limit <= 1000:
            return error(400, "limit must be between 1 and 1000")
        from rollback.stores.history import record_to_dict

        records = await run_in_threadpool(rt.history.query, environment, service or None, limit)
        return JSONResponse({"status": "success", "data": [record_to_dict(r) for r in records]})

    @app.get("/deployment/stats")
    async def stats(request: Request, environment: str = "", days: int = 30) -> JSONResponse:
        """The report's numbers for one environment over the last ``days``."""
        if not bearer_ok(request):
            return error(401, "missing or invalid bearer token")
        _known(config, environment, None)
        if not 1 <= days <= 366:
            return error(400, "days must be between 1 and 366")
        data = await run_in_threadpool(deployment_stats, rt, environment, days)
        return JSONResponse({"status": "success", "data": data})

    return app


def deployment_stats(rt: Runtime, environment: str, days: int) -> dict[str, Any]:
    """The same numbers ``reports.metrics`` computes for the metrics report."""
    from reports.load import audit_from_store, records_frame
    from reports.metrics import compute

    history = records_frame(rt.history.query(environment))
    audit = audit_from_store(rt.audit)
    document = compute(history, audit, environment, utcnow(), days).document
    keys = ("environment", "generatedAt", "window", "stats", "recentTrends", "dora", "rollbacks")
    return {k: document[k] for k in keys if k in document} | {
        "services": document.get("services", {})
    }


class _RefusalLog:
    """Warnings about refused requests, at most one per ``every_s`` with a count of the
    ones in between: a flood of forged requests must not become a flood of log lines."""

    def __init__(self, every_s: float = 10) -> None:
        self.every_s = every_s
        self._last = -every_s
        self._skipped = 0

    def note(self, message: str, *args: Any) -> None:
        import time

        now = time.monotonic()
        if now - self._last < self.every_s:
            self._skipped += 1
            return
        skipped, self._skipped, self._last = self._skipped, 0, now
        suffix = f" (and {skipped} more refused since the last warning)" if skipped else ""
        log.warning(message + suffix, *args)


def _delivery(request: Request) -> str | None:
    value = request.headers.get("x-github-delivery", "").strip()
    return value[:200] or None


def _is_sns(request: Request, payload: Any) -> bool:
    if request.headers.get("x-amz-sns-message-type"):
        return True
    return (
        isinstance(payload, Mapping) and payload.get("Type") in SNS_TYPES and "TopicArn" in payload
    )


def _known(config: Config, environment: str, service: str | None) -> None:
    if not environment:
        raise _Refused(400, "environment is required")
    try:
        if service:
            config.service(environment, service)
        else:
            config.environment(environment)
    except ConfigError as exc:
        raise _Refused(404, str(exc)) from None


def _api_request(
    config: Config, data: Any, idempotency_key: str | None
) -> tuple[RollbackRequest, str]:
    """The ``POST /rollback`` body as a rollback request; _Refused names what is wrong."""
    if not isinstance(data, dict):
        raise _Refused(400, "body must be a JSON object")
    for name in ("environment", "rollback_type", "user_id", "reason"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise _Refused(400, f"{name} is required")
    for name in ("image_tag", "service", "confirmation"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise _Refused(400, f"{name} must be a string")
    environment = data["environment"].strip()
    service = (data.get("service") or "").strip() or None
    _known(config, environment, service)
    if service is None:
        services = sorted(config.environment(environment).services)
        if len(services) != 1:
            raise _Refused(400, f"service is required: {environment} has {', '.join(services)}")
        service = services[0]
    request = RollbackRequest(
        environment=environment,
        service=service,
        to=(data.get("image_tag") or "").strip() or None,
        reason=data["reason"].strip()[:500],
        requested_by=data["user_id"].strip()[:200],
        trigger="manual",
        dry_run=bool(data.get("dry_run", False)),
        confirmation=data.get("confirmation"),
        source_event_id=f"api:{idempotency_key.strip()[:200]}" if idempotency_key else None,
    )
    return request, data["rollback_type"].strip()
