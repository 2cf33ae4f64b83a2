"""Audit stage: the record is written before anything is checked or changed, moves on
with the run (``transition``, a step of the stage that acts) and ends with the outcome."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from prefect import get_run_logger

from rollback.errors import AlreadyRecordedError, RollbackError
from rollback.models import (
    AuditRecord,
    DeploymentRecord,
    RollbackOutcome,
    RollbackRequest,
    Status,
    utcnow,
)
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


def transition(rt: Runtime, audit_id: str, status: Status, **fields: object) -> None:
    """The record's next status (a step inside a stage: retried with it, so idempotent)."""
    try:
        rt.audit.transition(audit_id, status, **fields)
    except AlreadyRecordedError:
        current = rt.audit.get(audit_id)
        if current is None or current.status != status:  # a retry that already landed is fine
            raise
    get_run_logger().info("audit %s -> %s", audit_id, status.value)


@stage("record-outcome")
def record_outcome(
    rt: Runtime, request: RollbackRequest, outcome: RollbackOutcome, release_lock: bool
) -> None:
    """The final status; a rollback that ran goes into the deployment history (its
    record id is the audit id: a retry writes it once); then the service is free."""
    status = Status(outcome.status)
    transition(
        rt,
        outcome.audit_id,
        status,
        from_version=outcome.from_version,
        to_version=outcome.to_version,
        checks=outcome.checks,
        outcome_reason=outcome.reason,
    )
    if status in (Status.SUCCEEDED, Status.FAILED) and outcome.to_version:
        now = utcnow()
        rt.history.append(
            DeploymentRecord(
                environment=request.environment,
                service=request.service,
                version=outcome.to_version,
                status="success" if status == Status.SUCCEEDED else "failed",
                kind="rollback",
                started_at=now - timedelta(seconds=outcome.duration_s or 0),
                finished_at=now,
                from_version=outcome.from_version,
                trigger=request.trigger,
                record_id=outcome.audit_id,
            )
        )
    if release_lock:
        try:
            rt.locks.release(request.environment, request.service, outcome.audit_id)
        except RollbackError as exc:  # the lease runs out by itself
            get_run_logger().warning("could not release the lock (its lease expires): %s", exc)
