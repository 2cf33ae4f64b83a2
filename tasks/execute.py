"""Execute stage: one change on the platform. The audit record already names the
from- and to-version (written by the flow before this runs)."""

from __future__ import annotations

from prefect import get_run_logger

from rollback.models import RollbackRequest, Version
from rollback.runtime import Runtime
from tasks._common import stage


@stage("mark-bad-version")
def mark_bad(rt: Runtime, request: RollbackRequest, version: str) -> None:
    """The version rolled back from is never chosen automatically again."""
    rt.markers.mark_bad(request.environment, request.service, version)


@stage("execute-rollback")
def execute(rt: Runtime, request: RollbackRequest, target: Version, audit_id: str) -> None:
    get_run_logger().info("switching %s/%s to %s", request.environment, request.service, target)
    platform = rt.target(request.environment, request.service)

    def before() -> str | None:  # what the audit record says ran before the change
        record = rt.audit.get(audit_id)
        return record.from_version if record else None

    platform.prepare(before)
    platform.execute(target)
