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
from deployments.receiver import aws as aws_events_router
from deployments.receiver.context import Context
from deployments.receiver.errors import RETRY_AFTER_S, CatchInternalErrors, Refused, error
from deployments.signatures import SnsVerifier
from flows.launch import Intake, Launcher, printable
from flows.platform_watch import PlatformWatch
from rollback.config import Config
from rollback.config.webhooks import WebhooksConfig
from rollback.errors import ConfigError
from rollback.platform_rollbacks import PlatformRollbacks
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
    platform: PlatformRollbacks | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The receiver app. ``sns_verifier`` and ``environ`` are injectable for tests (a
    verifier that accepts a local certificate URL; generated secrets)."""
    ctx = _context(config, launcher, runtime, sns_verifier, environ)
    app = FastAPI(
        title="rollback receiver",
        description="Signed webhooks and the REST API that start rollbacks.",
        version="1",
        # FastAPI's /docs and /redoc load their files from a CDN: blank offline. /docs is
        # served by _docs from files that ship with swagger-ui-py; /redoc is off.
        docs_url=None,
        redoc_url=None,
    )
    app.state.intake = ctx.intake
    # ECS circuit breaker / CodeDeploy automatic rollbacks are watched, not fought.
    watch = PlatformWatch(
        config, ctx.runtime, ctx.intake, platform or ctx.runtime.platform_rollbacks()
    )
    app.state.platform_watch = watch
    watch.resume()  # watches an earlier receiver left open go on (flows/platform_watch.py)
    app.add_middleware(CatchInternalErrors)
    _handlers(app)
    _docs(app)
    _probes(app, ctx)
    app.include_router(github.router(ctx))
    app.include_router(cloudwatch.router(ctx))
    app.include_router(aws_events_router.router(ctx, watch))
    app.include_router(api.router(ctx))
    return app


def _context(
    config: Config,
    launcher: Launcher,
    runtime: Runtime | None,
    sns_verifier: SnsVerifier | None,
    environ: Mapping[str, str] | None,
) -> Context:
    """What every router shares; refuses (ConfigError) settings that would map an event
    nowhere or let one credential open two entrances."""
    hooks = config.webhooks or WebhooksConfig()
    problems = events.route_errors(config) + credential_errors(hooks)
    if problems:
        raise ConfigError(f"{config.source or '<config>'}: " + "; ".join(problems))
    rt = runtime or Runtime(config)
    verifier = sns_verifier or SnsVerifier()
    verifier.configure(hooks.sns.cert_cache_size, hooks.sns.cert_fetch_timeout_s)
    if not hooks.sns.topic_arns:
        log.info("SNS is off: webhooks.sns.topic_arns names no topic")
    return Context(
        config=config,
        hooks=hooks,
        env=os.environ if environ is None else environ,
        launcher=launcher,
        runtime=rt,
        intake=Intake(config, launcher, rt),
        verifier=verifier,
    )


def _probes(app: FastAPI, ctx: Context) -> None:
    """``/healthz`` (liveness) and ``/readyz`` (readiness: the stores answer)."""

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers (no store is touched)."""
        return {"status": "ok", "mode": ctx.launcher.mode}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the audit and history stores answer; 503 with Retry-After if not."""
        problem = await run_in_threadpool(ctx.intake.ready)
        if problem:
            log.warning("not ready: %s", printable(problem, 300))
            return error(503, f"not ready: {problem}", headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ready", "mode": ctx.launcher.mode})


def _docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its files served from the installed swagger-ui-py."""
    from pathlib import Path

    import swagger_ui
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles

    static = Path(swagger_ui.__file__).parent / "static"
    app.mount("/docs/static", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="rollback receiver",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


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
