"""Small facts kept beside the attempts in the audit table: the bad-version ledger
(with mark times, an audited unmark), claimed source events (the entrances' grants), the
running bake of each service (with a person's promote) and the receiver's open platform
watches."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.models import parse_iso, utcnow
from rollback.stores._dynamo import from_item, to_item
from rollback.stores.audit_table import AuditTable, conditional_failed, service_key, ts_key


@dataclass(frozen=True)
class Bake:
    """The current bake (deploy verification) of a service, as the marker store keeps
    it: who ended it early (promote) and how it ended (``verdict``, once over)."""

    bake_id: str
    environment: str
    service: str
    deployed_at: str
    version: str | None
    run_id: str | None
    live_until: str
    promoted_by: str | None = None
    promoted_at: str | None = None
    promote_reason: str | None = None
    verdict: str | None = None

    def running(self, now: datetime) -> bool:
        return self.verdict is None and self.live_until > mark_ts(now)


OPEN_WATCHES = "watches#open"
BAKE_FIELDS = frozenset(Bake.__dataclass_fields__)


def bake_of(item: dict[str, Any] | None) -> Bake | None:
    if not item or item.get("record_type") != "bake":
        return None
    return Bake(**{k: v for k, v in item.items() if k in BAKE_FIELDS})


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

    # -- the running bake of each service (``bake#<env>#<service>``) and the promote
    # signal a person writes into it, read by the bake loop in any process ---------

    def start_bake(self, bake: Bake, keep_days: int = 30) -> None:
        """The bake of ``bake.environment/service`` starts (replaces the last one)."""
        item = asdict(bake) | {
            "audit_id": _bake_key(bake.environment, bake.service),
            "record_type": "bake",
            "expires_at": int(time.time() + keep_days * 86400),
        }
        try:
            self.client.put_item(TableName=self.table, Item=to_item(item))
        except ClientError as exc:
            raise aws.translate(exc, f"record the bake of {bake.environment}") from exc

    def bake(self, environment: str, service: str) -> Bake | None:
        """The service's current (or last) bake."""
        key = _bake_key(environment, service)
        return bake_of(self.read_item(key, f"read the bake of {environment}/{service}"))

    def promote_bake(self, environment: str, service: str, by: str, reason: str) -> Bake | None:
        """End the running bake early as promoted (who, when, why); None, and nothing
        written, when no bake of the service is running (or it was promoted already)."""
        now = utcnow()
        values = {":by": by, ":at": mark_ts(now), ":why": reason, ":now": mark_ts(now)}
        return self._end(
            environment,
            service,
            "SET promoted_by = :by, promoted_at = :at, promote_reason = :why",
            "attribute_not_exists(promoted_by) AND live_until > :now",
            values,
        )

    def close_bake(self, environment: str, service: str, bake_id: str, verdict: str) -> Bake:
        """Write how the bake ended. A promote that came first wins (the verdict stays
        ``promoted``): returns the bake as stored, so the caller acts on that."""
        values = {":v": verdict, ":at": mark_ts(utcnow()), ":id": bake_id}
        closed = self._end(
            environment,
            service,
            "SET verdict = :v, ended_at = :at",
            "bake_id = :id AND attribute_not_exists(promoted_by)",
            values,
        )
        if closed is not None:
            return closed
        stored = self.bake(environment, service)
        if stored is None or stored.bake_id != bake_id:  # replaced by a newer bake
            return Bake(bake_id, environment, service, "", None, None, "", verdict=verdict)
        if stored.verdict is None:  # promoted: the bake ends as promoted, nothing else
            values[":v"] = "promoted"
            self._end(
                environment, service, "SET verdict = :v, ended_at = :at", "bake_id = :id", values
            )
            return replace(stored, verdict="promoted")
        return stored

    def _end(
        self,
        environment: str,
        service: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> Bake | None:
        """One conditional update of a bake still running; None if the condition failed."""
        try:
            out = self.client.update_item(
                TableName=self.table,
                Key=to_item({"audit_id": _bake_key(environment, service)}),
                UpdateExpression=update,
                ConditionExpression="record_type = :bake AND attribute_not_exists(verdict) AND "
                + condition,
                ExpressionAttributeValues=to_item(values | {":bake": "bake"}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise aws.translate(exc, f"update the bake of {environment}/{service}") from exc
        return bake_of(from_item(out.get("Attributes", {})))

    # -- the receiver's open platform watches (one item, ``watches#open``: watch id →
    # the watch as JSON), so a restarted receiver resumes them --------------------------

    def open_watch(self, watch_id: str, watch: dict[str, Any]) -> None:
        """Keep ``watch`` (plain JSON data) open until ``close_watch``."""
        key = to_item({"audit_id": OPEN_WATCHES})
        try:
            self.client.update_item(  # the map must exist before one of its keys is set
                TableName=self.table,
                Key=key,
                UpdateExpression="SET record_type = :t, watches = if_not_exists(watches, :m)",
                ExpressionAttributeValues=to_item({":t": "watches", ":m": {}}),
            )
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET watches.#w = :w",
                ExpressionAttributeNames={"#w": watch_id},
                ExpressionAttributeValues=to_item({":w": json.dumps(watch)}),
            )
        except ClientError as exc:
            raise aws.translate(exc, f"record the open watch {watch_id}") from exc

    def open_watches(self) -> dict[str, dict[str, Any]]:
        """Every watch opened and not closed yet, by id."""
        item = self.read_item(OPEN_WATCHES, "read the open platform watches") or {}
        return {k: json.loads(v) for k, v in (item.get("watches") or {}).items()}

    def close_watch(self, watch_id: str) -> bool:
        """Close the watch; True if this call closed it (False: closed already, e.g. by
        another receiver that resumed it too)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=to_item({"audit_id": OPEN_WATCHES}),
                UpdateExpression="REMOVE watches.#w",
                ConditionExpression="attribute_exists(watches.#w)",
                ExpressionAttributeNames={"#w": watch_id},
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise aws.translate(exc, f"close the watch {watch_id}") from exc
        return True


def mark_ts(ts: datetime) -> str:
    """UTC, fixed width: mark times compare as strings inside DynamoDB conditions."""
    return ts_key(ts.astimezone(UTC))


def _bake_key(environment: str, service: str) -> str:
    return f"bake#{service_key(environment, service)}"
