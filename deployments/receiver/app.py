"""The receiver app: one router per entrance, each with its own credential.

``create_app(config, launcher)`` builds the FastAPI app; ``rollback serve`` runs it.
Every refusal is a JSON ``{"status": "error", "message": ...}``; secrets are read from
the environment per request and never logged or returned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments import events
from deployments.receiver import api, cloudwatch, github
from deployments.receiver.context import Context
from deployments.receiver.errors import RETRY_AFTER_S, CatchInternalErrors, Refused, error
from deployments.signatures import SnsVerifier
from flows.launch import Intake, Launcher, printable
from rollback.config import Config
from rollback.config.webhooks import WebhooksConfig
from rollback.errors import ConfigError
from rollback.runtime import Runtime

log = logging.getLogger("deployments.receiver")


def credential_errors(hooks: WebhooksConfig) -> list[str]:
    """Settings that would let one credential open two entrances."""
    if hooks.api_token_env == hooks.cloudwatch.token_env:
        return [
            f"webhooks.api_token_env and webhooks.cloudwatch.token_env both name "
            f"{hooks.api_token_env}: each entrance needs its own credential"
        ]
    return []


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
    hooks = config.webhooks or WebhooksConfig()
    problems = events.route_errors(config) + credential_errors(hooks)
    if problems:
        raise ConfigError(f"{config.source or '<config>'}: " + "; ".join(problems))
    rt = runtime or Runtime(config)
    verifier = sns_verifier or SnsVerifier()
    verifier.configure(hooks.sns.cert_cache_size, hooks.sns.cert_fetch_timeout_s)
    ctx = Context(
        config=config,
        hooks=hooks,
        env=os.environ if environ is None else environ,
        launcher=launcher,
        runtime=rt,
        intake=Intake(config, launcher, rt),
        verifier=verifier,
    )
    if not hooks.sns.topic_arns:
        log.info("SNS is off: webhooks.sns.topic_arns names no topic")
    app = FastAPI(
        title="rollback receiver",
        description="Signed webhooks and the REST API that start rollbacks.",
        version="1",
    )
    app.state.intake = ctx.intake
    app.add_middleware(CatchInternalErrors)
    _handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers (no store is touched)."""
        return {"status": "ok", "mode": launcher.mode}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the audit and history stores answer; 503 with Retry-After if not."""
        problem = await run_in_threadpool(ctx.intake.ready)
        if problem:
            log.warning("not ready: %s", printable(problem, 300))
            return error(503, f"not ready: {problem}", headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ready", "mode": launcher.mode})

    app.include_router(github.router(ctx))
    app.include_router(cloudwatch.router(ctx))
    app.include_router(api.router(ctx))
    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))
