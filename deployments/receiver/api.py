"""The REST API the dashboards call: ``POST /rollback`` and ``GET /deployment/*``,
admitted by the API bearer token (``webhooks.api_token_env``, credential ``api-token``).
A request made here is manual: a person asked, and protected environments want their
typed confirmation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from deployments.receiver.bodies import parse_json, read_body
from deployments.receiver.context import Context
from deployments.receiver.errors import Refused, error
from deployments.signatures import verify_bearer
from flows.launch import Acceptance
from flows.rollback_flow import CONFIRM_TIMEOUT_S
from rollback.config import Config
from rollback.decisions import check_confirmation
from rollback.errors import ConfigError
from rollback.models import DeploymentRecord, RollbackRequest, iso, utcnow
from rollback.runtime import Runtime
from rollback.stores.history import record_to_dict

CREDENTIAL = "api-token"
NOT_AUTHORIZED = "missing or invalid bearer token"


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


ROLLBACK_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RollbackBody.model_json_schema()}},
    }
}


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    _rollback_route(api, ctx)
    _history_routes(api, ctx)
    _stats_route(api, ctx)
    return api


def authorized(ctx: Context, request: Request) -> bool:
    """The request carries the API bearer token."""
    token = ctx.secret(ctx.hooks.api_token_env)
    return verify_bearer(token, request.headers.get("authorization"))


# -- POST /rollback ---------------------------------------------------------------------------
def _rollback_route(api: APIRouter, ctx: Context) -> None:
    @api.post("/rollback", openapi_extra=ROLLBACK_BODY_DOC)
    async def rollback(request: Request) -> JSONResponse:
        """Start a rollback (the dashboards' API). Bearer token required; the same
        ``Idempotency-Key`` with another body is refused (422)."""
        if not authorized(ctx, request):
            return error(401, NOT_AUTHORIZED)
        data = parse_json(await read_body(request, ctx.hooks.max_body_bytes))
        req, rollback_type = api_request(ctx.config, data, request.headers.get("idempotency-key"))
        # Say what will happen: a run that can only be refused is never "initiated".
        # Only a deployment run can pause for the typed text (embedded and background
        # task runs cannot: they would only be refused).
        awaiting = confirmation_gate(ctx.config, req, can_pause=ctx.launcher.mode == "deployment")
        acceptance = await ctx.submit(req)
        if acceptance.status == "in_flight":
            return error(
                409,
                f"a rollback of {req.environment}/{req.service} is already in flight "
                f"(audit {acceptance.audit_id})",
            )
        return rollback_answer(ctx, req, rollback_type, acceptance, awaiting)


def rollback_answer(
    ctx: Context,
    req: RollbackRequest,
    rollback_type: str,
    acceptance: Acceptance,
    awaiting: str | None,
) -> JSONResponse:
    """200 initiated (or already initiated), or 202 awaiting the typed ``awaiting`` text
    by a deadline."""
    deadline = utcnow() + timedelta(seconds=CONFIRM_TIMEOUT_S)
    data = {
        "audit_id": acceptance.audit_id,
        "workflow_run_id": acceptance.flow_run_id,
        "environment": req.environment,
        "service": req.service,
        "rollback_type": rollback_type,
        "image_tag": req.to,
        "estimated_duration": ctx.hooks.estimated_duration,
        "monitor_url": acceptance.monitor_url,
    }
    if awaiting:
        message = (
            f"{req.environment} is protected: the run pauses before any change; type "
            f"{awaiting} in its Resume form (monitor_url) by about {deadline:%H:%M} UTC, "
            "or it is refused with nothing changed"
        )
        body = {"status": "awaiting_confirmation", "message": message}
        return JSONResponse(body | {"data": data | {"confirm_by": iso(deadline)}}, status_code=202)
    message = (
        "Rollback initiated" if acceptance.status == "accepted" else "Rollback already initiated"
    )
    return JSONResponse({"status": "success", "message": message, "data": data})


# -- GET /deployment/history ------------------------------------------------------------------
def _history_routes(api: APIRouter, ctx: Context) -> None:
    @api.get("/deployment/history")
    async def history(
        request: Request, environment: str = "", service: str | None = None, limit: int = 50
    ) -> JSONResponse:
        """Deploys and rollbacks, newest first; every environment when none is given."""
        if not authorized(ctx, request):
            return error(401, NOT_AUTHORIZED)
        if environment or service:
            known(ctx.config, environment, service)
        if not 1 <= limit <= 1000:
            return error(400, "limit must be between 1 and 1000")
        envs = [environment] if environment else sorted(ctx.config.environments)
        records = await run_in_threadpool(newest_records, ctx.runtime, envs, service, limit)
        return JSONResponse({"status": "success", "data": [record_to_dict(r) for r in records]})

    @api.get("/deployment/history/{record_id}")
    async def history_record(request: Request, record_id: str) -> JSONResponse:
        """One history record by its id (404 when no configured service has it)."""
        if not authorized(ctx, request):
            return error(401, NOT_AUTHORIZED)
        places = [(e, s) for e, env in ctx.config.environments.items() for s in env.services]
        record = await run_in_threadpool(ctx.runtime.history.get, record_id[:200], places)
        if record is None:
            return error(404, "no history record with that id")
        return JSONResponse({"status": "success", "data": record_to_dict(record)})


def newest_records(
    rt: Runtime, environments: list[str], service: str | None, limit: int
) -> list[DeploymentRecord]:
    """The ``limit`` newest history records of ``environments`` (by time, every one)."""
    found = [r for e in environments for r in rt.history.query(e, service or None, limit)]
    found.sort(key=lambda r: r.finished_at or r.started_at or utcnow(), reverse=True)
    return found[:limit]


# -- GET /deployment/stats --------------------------------------------------------------------
def _stats_route(api: APIRouter, ctx: Context) -> None:
    @api.get("/deployment/stats")
    async def stats(
        request: Request, environment: str = "", period: int | None = None, days: int = 30
    ) -> JSONResponse:
        """The report's numbers over the last ``period`` days (``days`` is the older
        name) for one environment, or for every environment (keyed by name) without one."""
        if not authorized(ctx, request):
            return error(401, NOT_AUTHORIZED)
        if environment:
            known(ctx.config, environment, None)
        days = period if period is not None else days
        if not 1 <= days <= 366:
            return error(400, "days must be between 1 and 366")
        envs = [environment] if environment else sorted(ctx.config.environments)
        every = await run_in_threadpool(environments_stats, ctx.runtime, envs, days)
        data = every[environment] if environment else {"environments": every}
        return JSONResponse({"status": "success", "data": data})


STATS_KEYS = ("environment", "generatedAt", "window", "stats", "recentTrends", "dora", "rollbacks")


def deployment_stats(rt: Runtime, environment: str, days: int) -> dict[str, Any]:
    """The same numbers ``reports.metrics`` computes for the metrics report."""
    return environments_stats(rt, [environment], days)[environment]


def environments_stats(
    rt: Runtime, environments: list[str], days: int
) -> dict[str, dict[str, Any]]:
    """``deployment_stats`` of each environment, keyed by name: both stores read once for
    all of them, as the metrics report reads them (``reports.load``)."""
    from reports.load import read_audit, read_history
    from reports.metrics import compute, utc_timestamp

    now = utc_timestamp(utcnow())
    history = read_history(rt, environments, now, days)
    audit = read_audit(rt, environments, now, days, history)
    every: dict[str, dict[str, Any]] = {}
    for environment in environments:
        document = compute(history, audit, environment, now, days).document
        every[environment] = {k: document[k] for k in STATS_KEYS if k in document} | {
            "services": document.get("services", {})
        }
    return every


def confirmation_gate(config: Config, request: RollbackRequest, *, can_pause: bool) -> str | None:
    """The text a paused run will wait for, when ``request`` needs a person's typed
    confirmation and its run can pause (a deployment run); else None. Refused (403) when
    the run could only be refused: a wrong text, or no text where no run can pause."""
    env = config.environment(request.environment)
    if not env.protected or request.dry_run:  # a dry run changes nothing
        return None
    expected = config.confirmation_for(request.environment)
    if request.confirmation is None:
        if can_pause:
            return expected
        raise Refused(403, f"confirmation required ({expected})")
    if not check_confirmation(request.confirmation, expected, True).passed:
        raise Refused(403, f"confirmation does not match ({expected} required)")
    return None


def known(config: Config, environment: str, service: str | None) -> None:
    if not environment:
        raise Refused(400, "environment is required")
    try:
        if service:
            config.service(environment, service)
        else:
            config.environment(environment)
    except ConfigError as exc:
        raise Refused(404, str(exc)) from None


def api_request(
    config: Config, data: Any, idempotency_key: str | None
) -> tuple[RollbackRequest, str]:
    """The ``POST /rollback`` body as a rollback request; Refused names what is wrong."""
    if not isinstance(data, dict):
        raise Refused(400, "body must be a JSON object")
    for name in ("environment", "rollback_type", "user_id", "reason"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Refused(400, f"{name} is required")
    for name in ("image_tag", "service", "confirmation"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise Refused(400, f"{name} must be a string")
    if not isinstance(data.get("dry_run", False), bool):
        raise Refused(400, "dry_run must be true or false")
    environment = data["environment"].strip()
    service = (data.get("service") or "").strip() or None
    known(config, environment, service)
    if service is None:
        services = sorted(config.environment(environment).services)
        if len(services) != 1:
            raise Refused(400, f"service is required: {environment} has {', '.join(services)}")
        service = services[0]
    key = (idempotency_key or "").strip()[:200]
    request = RollbackRequest(
        environment=environment,
        service=service,
        to=(data.get("image_tag") or "").strip() or None,
        reason=data["reason"].strip()[:500],
        requested_by=data["user_id"].strip()[:200],
        trigger="manual",
        dry_run=data.get("dry_run", False),
        confirmation=data.get("confirmation"),
        source_event_id=f"api:{key}" if key else None,
        authenticated_by=CREDENTIAL,
    )
    return request, data["rollback_type"].strip()
