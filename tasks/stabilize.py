"""Stabilize stage: wait until the platform settles on the target, renewing the
service lock at each poll so a live rollback keeps it and a dead one loses it."""

from __future__ import annotations

from prefect import get_run_logger

from rollback import progress
from rollback.models import RollbackRequest, StabilizeResult, Version
from rollback.runtime import Runtime
from tasks._common import stage


@stage("stabilize")
def stabilize(
    rt: Runtime, request: RollbackRequest, target: Version, audit_id: str
) -> StabilizeResult:
    log = get_run_logger()
    service_cfg = rt.config.service(request.environment, request.service)
    lease = rt.config.stores.lock_lease_s

    def on_poll(line: str) -> None:
        log.info("stabilizing %s/%s: %s", request.environment, request.service, line)
        progress.emit(f"stabilizing: {line}")
        rt.locks.renew(request.environment, request.service, audit_id, lease)

    return rt.target(request.environment, request.service).stabilize(
        target, service_cfg.stabilize_timeout_s, on_poll
    )
