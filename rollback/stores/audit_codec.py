"""The one codec of ``AuditRecord``: to the stored fields, back, and the JSON view."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rollback.models import AuditRecord, CheckResult, Status, iso, parse_iso, utcnow
from rollback.stores.audit_table import service_key, ts_key


def to_dict(record: AuditRecord) -> dict[str, Any]:
    """A JSON-ready view of an audit record (CLI output, artifacts, reports)."""
    return {
        "audit_id": record.audit_id,
        "environment": record.environment,
        "service": record.service,
        "status": record.status.value,
        "requested_at": iso(record.requested_at),
        "requested_by": record.requested_by,
        "trigger": record.trigger,
        "reason": record.reason,
        "source_event_id": record.source_event_id,
        "from_version": record.from_version,
        "to_version": record.to_version,
        "checks": [c.as_dict() for c in record.checks],
        "transitions": [{"status": s, "at": at} for s, at in record.transitions],
        "flow_run_id": record.flow_run_id,
        "outcome_reason": record.outcome_reason,
        "dry_run": record.dry_run,
        "authenticated_by": record.authenticated_by,
        "linked_audit_id": record.linked_audit_id,
    }


def to_item_fields(record: AuditRecord) -> dict[str, Any]:
    """The stored item of a new attempt (None fields left out)."""
    item = to_dict(record) | {
        "record_type": "attempt",
        "service_key": service_key(record.environment, record.service),
        "requested_at": ts_key(record.requested_at),
        "transitions": [{"status": record.status.value, "at": ts_key(record.requested_at)}],
    }
    return {k: v for k, v in item.items() if v is not None and v != []}


def encode_field(key: str, value: Any) -> Any:
    if key == "checks":
        return [c.as_dict() for c in value]
    if isinstance(value, datetime):
        return ts_key(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def from_fields(data: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        audit_id=data["audit_id"],
        environment=data["environment"],
        service=data["service"],
        status=Status(data["status"]),
        requested_at=parse_iso(data["requested_at"]) or utcnow(),
        requested_by=data.get("requested_by", "unknown"),
        trigger=data.get("trigger", "manual"),
        reason=data.get("reason", ""),
        source_event_id=data.get("source_event_id"),
        from_version=data.get("from_version"),
        to_version=data.get("to_version"),
        checks=tuple(
            CheckResult(c["name"], bool(c["passed"]), c.get("detail", ""))
            for c in data.get("checks", [])
        ),
        transitions=tuple((t["status"], t["at"]) for t in data.get("transitions", [])),
        flow_run_id=data.get("flow_run_id"),
        outcome_reason=data.get("outcome_reason"),
        dry_run=bool(data.get("dry_run", False)),
        authenticated_by=data.get("authenticated_by"),
        linked_audit_id=data.get("linked_audit_id"),
    )
