"""Small facts kept beside the attempts in the audit table: the bad-version ledger
(with mark times, an audited unmark) and claimed source events (the entrances' grants)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.models import parse_iso, utcnow
from rollback.stores._dynamo import to_item
from rollback.stores.audit_table import AuditTable, conditional_failed, service_key, ts_key


class MarkerStore(AuditTable):
    """Small facts kept beside the attempts: bad versions, claimed source events."""

    def bad_versions(self, environment: str, service: str) -> frozenset[str]:
        return frozenset(self.bad_marks(environment, service))

    def bad_marks(self, environment: str, service: str) -> dict[str, datetime | None]:
        """Each bad version with the time it was (last) marked; None for a mark written
        before marks carried a time (only ``rollback unmark`` clears those)."""
        item = self.read_item(
            f"bad#{service_key(environment, service)}",
            f"read bad versions of {environment}/{service}",
        )
        times = (item or {}).get("marked_at") or {}
        return {v: parse_iso(times.get(v)) for v in (item or {}).get("versions", set())}

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
                ExpressionAttributeValues=to_item({":v": {version}, ":at": mark_ts(utcnow())}),
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
            values[":at"] = mark_ts(deployed_at)
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
            if conditional_failed(exc):
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
            "requested_at": ts_key(utcnow()),
            "marked_at": ts_key(marked_at) if marked_at else None,
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
        item = self.read_item(audit_id, f"read audit record {audit_id}")
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
            if not conditional_failed(exc):
                raise aws.translate(exc, f"claim event {event_id}") from exc
        claim = self.event_claim(event_id)
        return claim[0] if claim else audit_id

    def event_claim(self, event_id: str) -> tuple[str, str | None] | None:
        """(audit id, credential name) of the claim on ``event_id``, or None."""
        data = self.read_item(f"event#{event_id}", f"read claim of event {event_id}")
        if data is None:
            return None
        return str(data["claimed_by"]), data.get("authenticated_by")

    def event_fingerprint(self, event_id: str) -> str | None:
        """The ``fingerprint`` stored with the claim on ``event_id``, if any."""
        data = self.read_item(f"event#{event_id}", f"read claim of event {event_id}")
        return data.get("fingerprint") if data else None


def mark_ts(ts: datetime) -> str:
    """UTC, fixed width: mark times compare as strings inside DynamoDB conditions."""
    return ts_key(ts.astimezone(UTC))
