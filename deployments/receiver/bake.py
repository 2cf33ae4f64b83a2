"""Starting a bake (deploy verification) from the receiver: one bake per successful
deploy (claimed in the audit table), started in this process or as a run of the
``verify-deploy`` deployment, like rollbacks."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments.deploy_success import DeploySucceeded
from deployments.receiver.context import Context
from deployments.receiver.errors import unavailable
from flows.launch import printable
from flows.verify_deploy import start_verification
from rollback.config.verification import verification_for
from rollback.errors import RollbackError
from rollback.models import new_id

log = logging.getLogger("deployments.receiver")


def start_bake(
    ctx: Context, done: DeploySucceeded, credential: str
) -> tuple[str, str | None] | None:
    """Claim the deploy and start its verification; None when none is configured."""
    settings = verification_for(ctx.config, done.environment, done.service)
    if settings is None or not settings.metrics:
        return None
    claim = f"verify-{new_id()}"
    owner = ctx.runtime.markers.claim_event(done.key, claim, authenticated_by=credential)
    if owner != claim:
        return "duplicate", None
    run = start_verification(
        ctx.config,
        done.environment,
        done.service,
        done.deployed_at,
        done.version,
        ctx.launcher.mode,
    )
    return "verifying", run


async def bake_answer(ctx: Context, done: DeploySucceeded, credential: str) -> JSONResponse:
    """202 verifying, 200 duplicate, or 200 ignored (no verification configured)."""
    try:
        run = await run_in_threadpool(start_bake, ctx, done, credential)
    except RollbackError as exc:
        log.warning("could not start verification: %s", printable(exc, 300))
        raise unavailable("could not start the verification; retry later") from None
    if run is None:
        reason = (
            f"deploy of {done.environment}/{done.service} succeeded: no verification configured"
        )
        return JSONResponse({"status": "ignored", "reason": reason})
    status, run_id = run
    code = 202 if status == "verifying" else 200
    return JSONResponse({"status": status, "flow_run_id": run_id}, status_code=code)
