"""Stabilize stage: the version left is marked bad and the record says ``stabilizing``,
then wait until the platform settles on the target, renewing the service lock at each
poll so a live rollback keeps it and a dead one loses it; then verify what really runs.
One task run: after the mark, every step only reads the platform, so a retry after a
transient fault repeats them safely."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger

from rollback import progress
from rollback.models import CheckResult, RollbackRequest, StabilizeResult, Status
from rollback.runtime import Runtime
from tasks._common import stage
from tasks.audit import transition
from tasks.resolve import Change
from tasks.verify import verify


@dataclass(frozen=True)
class Settled:
    """How the platform settled, and the verification (none when it did not settle)."""

    stable: StabilizeResult
    verification: list[CheckResult]


@stage("stabilize-and-verify")
def stabilize(rt: Runtime, request: RollbackRequest, audit_id: str, change: Change) -> Settled:
    log = get_run_logger()
    # The version rolled back from is never chosen automatically again. Only a switch
    # that happened gets here (one that failed and was undone changed nothing); a crash
    # before this line leaves the record `executing`, and the next request resumes it
    # and marks from_version here.
    env, service, left = request.environment, request.service, change.from_version
    rt.markers.mark_bad(env, service, left)
    log.info("marked %s bad for %s/%s", left, env, service)
    transition(rt, audit_id, Status.STABILIZING)
    service_cfg = rt.config.service(request.environment, request.service)
    lease = rt.config.stores.lock_lease_s

    def on_poll(line: str) -> None:
        log.info("stabilizing %s/%s: %s", request.environment, request.service, line)
        progress.emit(f"stabilizing: {line}")
        rt.locks.renew(request.environment, request.service, audit_id, lease)

    stable = rt.target(request.environment, request.service).stabilize(
        change.target, service_cfg.stabilize_timeout_s, on_poll
    )
    if not stable.stable:
        return Settled(stable, [])
    log.info("stable: %s", stable.detail)
    return Settled(stable, verify(rt, request, change.target))
