"""Execute stage: the record names the from- and to-version, then one change on the
platform (one task run: a retry after a transient fault finds the record already there)."""

from __future__ import annotations

from prefect import get_run_logger

from rollback.models import CheckResult, RollbackRequest, Status
from rollback.runtime import Runtime
from tasks._common import stage
from tasks.audit import transition
from tasks.resolve import Change


@stage("execute-rollback")
def execute(
    rt: Runtime,
    request: RollbackRequest,
    audit_id: str,
    change: Change,
    checks: list[CheckResult],
) -> str:
    """Returns what was done, for the timeline."""
    target = change.target
    # The record names from/to (and the checks) before the change: a crash loses nothing.
    transition(
        rt,
        audit_id,
        Status.EXECUTING,
        from_version=change.from_version,
        to_version=target.id,
        checks=checks,
    )
    if change.current.id == target.id:
        return f"already on {target} (resumed): nothing to switch"
    get_run_logger().info("switching %s/%s to %s", request.environment, request.service, target)
    platform = rt.target(request.environment, request.service)

    def before() -> str | None:  # what the audit record says ran before the change
        record = rt.audit.get(audit_id)
        return record.from_version if record else None

    platform.prepare(before)
    platform.execute(target)
    return f"switched to {target}"
