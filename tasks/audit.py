"""Audit stage: the record is written before anything is checked or changed."""

from __future__ import annotations

import contextlib

from prefect import get_run_logger

from rollback.errors import AlreadyRecordedError
from rollback.models import AuditRecord, RollbackRequest, Status, utcnow
from rollback.runtime import Runtime
from tasks._common import stage


@stage("open-audit-record")
def open_audit(
    rt: Runtime, request: RollbackRequest, audit_id: str, flow_run_id: str | None
) -> None:
    rt.ensure_tables()
    record = AuditRecord(
        audit_id=audit_id,
        environment=request.environment,
        service=request.service,
        status=Status.REQUESTED,
        requested_at=utcnow(),
        requested_by=request.requested_by,
        trigger=request.trigger,
        reason=request.reason,
        source_event_id=request.source_event_id,
        flow_run_id=flow_run_id,
        dry_run=request.dry_run,
        authenticated_by=request.authenticated_by,
    )
    # A retry after a lost response finds the record already there: that is fine.
    with contextlib.suppress(AlreadyRecordedError):
        rt.audit.create(record)
    get_run_logger().info(
        "audit %s: %s/%s requested by %r (%s, via %s)",
        audit_id,
        request.environment,
        request.service,
        request.requested_by,
        request.trigger,
        request.authenticated_by,
    )


@stage("record-status")
def record_status(rt: Runtime, audit_id: str, status: Status, **fields: object) -> None:
    try:
        rt.audit.transition(audit_id, status, **fields)
    except AlreadyRecordedError:
        current = rt.audit.get(audit_id)
        if current is None or current.status != status:  # a retry that already landed is fine
            raise
    get_run_logger().info("audit %s -> %s", audit_id, status.value)
