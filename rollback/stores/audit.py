"""The audit log (DynamoDB): one item per rollback attempt, plus the per-service
lease lock, the bad-version list and claimed source events, all in the same table.

Writes are conditional: a retried write never duplicates an attempt or overwrites a
final state; a transition only applies from an allowed predecessor status.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import AlreadyRecordedError, LockHeldError
from rollback.models import (
    AuditRecord,
    CheckResult,
    Status,
    allowed_predecessors,
    iso,
    parse_iso,
    utcnow,
)
from rollback.stores._dynamo import DynamoTable, from_item, to_item

log = logging.getLogger(__name__)
BY_SERVICE = "by-service"


def service_key(environment: str, service: str) -> str:
    return f"{environment}#{service}"


def _ts(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


def _conditional_failed(exc: ClientError) -> bool:
    return aws.error_code(exc) == "ConditionalCheckFailedException"


class AuditTable(DynamoTable):
    key_schema = [{"AttributeName": "audit_id", "KeyType": "HASH"}]
    attributes = [
        {"AttributeName": "audit_id", "AttributeType": "S"},
        {"AttributeName": "service_key", "AttributeType": "S"},
        {"AttributeName": "requested_at", "AttributeType": "S"},
    ]
    indexes = [
        {
            "IndexName": BY_SERVICE,
            "KeySchema": [
                {"AttributeName": "service_key", "KeyType": "HASH"},
                {"AttributeName": "requested_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    ttl_attribute = "expires_at"


class AuditStore(AuditTable):
    """Rollback attempts: create, transition, annotate, read."""

    def create(self, record: AuditRecord) -> None:
        item = {
            "audit_id": record.audit_id,
            "record_type": "attempt",
            "service_key": service_key(record.environment, record.service),
            "environment": record.environment,
            "service": record.service,
            "status": record.status.value,
            "requested_at": _ts(record.requested_at),
            "requested_by": record.requested_by,
            "trigger": record.trigger,
            "reason": record.reason,
            "source_event_id": record.source_event_id,
            "dry_run": record.dry_run,
            "flow_run_id": record.flow_run_id,
            "authenticated_by": record.authenticated_by,
            "linked_audit_id": record.linked_audit_id,
            "outcome_reason": record.outcome_reason,
            "transitions": [{"status": record.status.value, "at": _ts(record.requested_at)}],
        }
        item = {k: v for k, v in item.items() if v is not None}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(audit_id)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise AlreadyRecordedError(
                    f"audit record {record.audit_id} already exists"
                ) from exc
            raise aws.translate(exc, f"write audit record {record.audit_id}") from exc

    def transition(self, audit_id: str, new: Status, **fields: Any) -> None:
        """Move to ``new`` (only from an allowed status), setting ``fields`` too."""
        sets = ["#status = :new", "transitions = list_append(transitions, :tr)"]
        values: dict[str, Any] = {
            ":new": new.value,
            ":tr": [{"status": new.value, "at": _ts(utcnow())}],
        }
        preds = sorted(s.value for s in allowed_predecessors(new))
        for i, pred in enumerate(preds):
            values[f":p{i}"] = pred
        names = {"#status": "status"}
        for i, (key, value) in enumerate(fields.items()):
            if value is None:
                continue
            names[f"#f{i}"] = key
            values[f":f{i}"] = _encode_field(key, value)
            sets.append(f"#f{i} = :f{i}")
        condition = "#status IN (" + ", ".join(f":p{i}" for i in range(len(preds))) + ")"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=to_item({"audit_id": audit_id}),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(audit_id) AND " + condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise AlreadyRecordedError(
                    f"audit record {audit_id} cannot move to {new.value} from its current status"
                ) from exc
            raise aws.translate(exc, f"update audit record {audit_id}") from exc

    def annotate(self, audit_id: str, **fields: Any) -> None:
        """Set fields that are not the status (versions, checks, run id)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        if not fields:
            return
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":f{i}": _encode_field(k, v) for i, (k, v) in enumerate(fields.items())}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=to_item({"audit_id": audit_id}),
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                ConditionExpression="attribute_exists(audit_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            raise aws.translate(exc, f"update audit record {audit_id}") from exc

    def get(self, audit_id: str) -> AuditRecord | None:
        try:
            out = self.client.get_item(
                TableName=self.table, Key=to_item({"audit_id": audit_id}), ConsistentRead=True
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read audit record {audit_id}") from exc
        item = out.get("Item")
        return _record(from_item(item)) if item else None

    def recent(
        self, environment: str, service: str, since: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Attempts for one service, newest first (optionally only since ``since``)."""
        cond = "service_key = :k"
        values: dict[str, Any] = {":k": service_key(environment, service)}
        if since:
            cond += " AND requested_at >= :since"
            values[":since"] = _ts(since)
        try:
            out = self.client.query(
                TableName=self.table,
                IndexName=BY_SERVICE,
                KeyConditionExpression=cond,
                ExpressionAttributeValues=to_item(values),
                ScanIndexForward=False,
                Limit=limit,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"query audit log for {environment}/{service}") from exc
        return [_record(from_item(i)) for i in out.get("Items", [])]

    def scan_all(self) -> list[AuditRecord]:
        """Every attempt (for reports); pages through the table."""
        items: list[AuditRecord] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            try:
                out = self.client.scan(**kwargs)
            except ClientError as exc:
                raise aws.translate(exc, f"scan audit table {self.table}") from exc
            for raw in out.get("Items", []):
                data = from_item(raw)
                if data.get("record_type") == "attempt":
                    items.append(_record(data))
            if "LastEvaluatedKey" not in out:
                return items
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]


class LockStore(AuditTable):
    """Per-(environment, service) lease lock: at most one rollback in flight, across
    processes and hosts. A lease that is not renewed expires, so a dead holder never
    blocks the service for longer than the lease."""

    def acquire(self, environment: str, service: str, holder: str, lease_s: float) -> None:
        now = time.time()
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(
                    {
                        "audit_id": f"lock#{service_key(environment, service)}",
                        "record_type": "lock",
                        "holder": holder,
                        "lease_until": int((now + lease_s) * 1000),
                        "expires_at": int(now + lease_s + 86400),
                    }
                ),
                ConditionExpression=(
                    "attribute_not_exists(audit_id) OR lease_until < :now OR holder = :me"
                ),
                ExpressionAttributeValues=to_item({":now": int(now * 1000), ":me": holder}),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                other = self.holder(environment, service)
                raise LockHeldError(
                    f"a rollback of {environment}/{service} is already in flight "
                    f"(audit {other or 'unknown'}): wait for it to finish"
                ) from exc
            raise aws.translate(exc, f"lock {environment}/{service}") from exc

    def renew(self, environment: str, service: str, holder: str, lease_s: float) -> None:
        self.acquire(environment, service, holder, lease_s)

    def release(self, environment: str, service: str, holder: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"lock#{service_key(environment, service)}"}),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=to_item({":me": holder}),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return  # someone else holds it now (our lease expired): nothing to release
            raise aws.translate(exc, f"unlock {environment}/{service}") from exc

    def holder(self, environment: str, service: str) -> str | None:
        try:
            out = self.client.get_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"lock#{service_key(environment, service)}"}),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read the lock of {environment}/{service}") from exc
        item = from_item(out["Item"]) if "Item" in out else None
        if not item or item.get("lease_until", 0) < time.time() * 1000:
            return None
        return str(item.get("holder"))


class MarkerStore(AuditTable):
    """Small facts kept beside the attempts: bad versions, claimed source events."""

    def bad_versions(self, environment: str, service: str) -> frozenset[str]:
        try:
            out = self.client.get_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"bad#{service_key(environment, service)}"}),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read bad versions of {environment}/{service}") from exc
        item = from_item(out["Item"]) if "Item" in out else {}
        return frozenset(item.get("versions", set()))

    def bad_marks(self, environment: str, service: str) -> dict[str, datetime | None]:
        """Each bad version with the time it was (last) marked; None for a mark written
        before marks carried a time (only ``rollback unmark`` clears those)."""
        try:
            out = self.client.get_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"bad#{service_key(environment, service)}"}),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read bad versions of {environment}/{service}") from exc
        item = from_item(out["Item"]) if "Item" in out else {}
        times = item.get("marked_at") or {}
        return {v: parse_iso(times.get(v)) for v in item.get("versions", set())}

    def mark_bad(self, environment: str, service: str, version: str) -> None:
        """Mark ``version`` bad now (the time is kept: only a deploy after it clears it)."""
        key = to_item({"audit_id": f"bad#{service_key(environment, service)}"})
        try:
            # The map must exist before one of its keys can be set (two paths of one
            # attribute cannot share an expression); the version and its time are then
            # written together, so a mark is never seen without its time.
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET record_type = :t, marked_at = if_not_exists(marked_at, :m)",
                ExpressionAttributeValues=to_item({":t": "bad-versions", ":m": {}}),
            )
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="ADD versions :v SET marked_at.#v = :at",
                ExpressionAttributeNames={"#v": version},
                ExpressionAttributeValues=to_item({":v": {version}, ":at": _mark_ts(utcnow())}),
            )
        except ClientError as exc:
            raise aws.translate(exc, f"mark {version} bad for {environment}/{service}") from exc

    def clear_bad(
        self,
        environment: str,
        service: str,
        version: str,
        deployed_at: datetime | None = None,
    ) -> bool:
        """Take ``version`` off the bad list; True if it was cleared.

        With ``deployed_at`` (a successful deploy finished then), only a mark older than
        that deploy is cleared, atomically: a mark made after it, or of unknown time,
        stays. Without it the mark goes unconditionally (``rollback unmark``, audited)."""
        names = {"#v": version}
        values: dict[str, Any] = {":v": {version}}
        condition = "contains(versions, :s)"
        values[":s"] = version
        key = to_item({"audit_id": f"bad#{service_key(environment, service)}"})
        if deployed_at is not None:
            condition += " AND marked_at.#v < :at"
            values[":at"] = _mark_ts(deployed_at)
        try:
            if deployed_at is None:  # a mark from before marks had times: no map yet
                self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET marked_at = if_not_exists(marked_at, :m)",
                    ConditionExpression="attribute_exists(audit_id)",
                    ExpressionAttributeValues=to_item({":m": {}}),
                )
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="DELETE versions :v REMOVE marked_at.#v",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise aws.translate(exc, f"clear bad mark of {version}") from exc
        return True

    def record_unmark(
        self,
        environment: str,
        service: str,
        version: str,
        *,
        reason: str,
        requested_by: str,
        marked_at: datetime | None,
        authenticated_by: str,
    ) -> str:
        """Write the audit record of a ``rollback unmark`` (before the mark is cleared);
        returns its id. Kept out of the by-service index: it is not a rollback attempt."""
        audit_id = f"unmark-{uuid.uuid4().hex}"
        item = {
            "audit_id": audit_id,
            "record_type": "unmark",
            "action": "unmark",
            "environment": environment,
            "service": service,
            "version": version,
            "reason": reason,
            "requested_by": requested_by,
            "authenticated_by": authenticated_by,
            "requested_at": _ts(utcnow()),
            "marked_at": _ts(marked_at) if marked_at else None,
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item({k: v for k, v in item.items() if v is not None}),
                ConditionExpression="attribute_not_exists(audit_id)",
            )
        except ClientError as exc:
            raise aws.translate(exc, f"write unmark record for {version}") from exc
        return audit_id

    def unmark_record(self, audit_id: str) -> dict[str, Any] | None:
        """The audit record of one ``rollback unmark``, as a plain dict."""
        try:
            out = self.client.get_item(
                TableName=self.table, Key=to_item({"audit_id": audit_id}), ConsistentRead=True
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read audit record {audit_id}") from exc
        item = from_item(out["Item"]) if "Item" in out else None
        if not item or item.get("record_type") != "unmark":
            return None
        item.pop("record_type", None)
        return item

    def claim_event(
        self,
        event_id: str,
        audit_id: str,
        ttl_days: int = 7,
        authenticated_by: str | None = None,
        fingerprint: str | None = None,
    ) -> str:
        """Claim a source event for ``audit_id``; returns the audit id that holds it
        (ours, or the one that claimed it first — a redelivery starts nothing new).

        The claim is also the entrance's grant: only an authenticated entrance (the
        receiver, the health guard) claims events, so a flow run that names a claimed
        event *and* its audit id was started by that entrance (``event_claim``)."""
        key = f"event#{event_id}"
        item: dict[str, Any] = {
            "audit_id": key,
            "record_type": "event",
            "claimed_by": audit_id,
            "expires_at": int(time.time() + ttl_days * 86400),
        }
        if authenticated_by:
            item["authenticated_by"] = authenticated_by
        if fingerprint:  # what the caller asked, to tell a reused idempotency key apart
            item["fingerprint"] = fingerprint
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(audit_id)",
            )
            return audit_id
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise aws.translate(exc, f"claim event {event_id}") from exc
        claim = self.event_claim(event_id)
        return claim[0] if claim else audit_id

    def event_claim(self, event_id: str) -> tuple[str, str | None] | None:
        """(audit id, credential name) of the claim on ``event_id``, or None."""
        try:
            out = self.client.get_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"event#{event_id}"}),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read claim of event {event_id}") from exc
        if "Item" not in out:
            return None
        data = from_item(out["Item"])
        return str(data["claimed_by"]), data.get("authenticated_by")

    def event_fingerprint(self, event_id: str) -> str | None:
        """The ``fingerprint`` stored with the claim on ``event_id``, if any."""
        try:
            out = self.client.get_item(
                TableName=self.table,
                Key=to_item({"audit_id": f"event#{event_id}"}),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read claim of event {event_id}") from exc
        return from_item(out["Item"]).get("fingerprint") if "Item" in out else None


def _mark_ts(ts: datetime) -> str:
    """UTC, fixed width: mark times compare as strings inside DynamoDB conditions."""
    return _ts(ts.astimezone(UTC))


def _encode_field(key: str, value: Any) -> Any:
    if key == "checks":
        return [c.as_dict() for c in value]
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _record(data: dict[str, Any]) -> AuditRecord:
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


def audit_dict(record: AuditRecord) -> dict[str, Any]:
    """A JSON-ready view of an audit record (CLI output, artifacts)."""
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
