"""Rollback attempts in the audit table. Writes are conditional: a retried write never
duplicates an attempt or overwrites a final state; a transition only applies from an
allowed predecessor status."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import AlreadyRecordedError
from rollback.models import AuditRecord, Status, allowed_predecessors, in_utc, utcnow
from rollback.stores import audit_codec as codec
from rollback.stores._dynamo import from_item, side_by_side, to_item
from rollback.stores.audit_table import (
    BY_SERVICE,
    AuditTable,
    conditional_failed,
    service_key,
    ts_key,
)

audit_dict = codec.to_dict  # the JSON view (CLI, artifacts)


class AuditStore(AuditTable):
    """Rollback attempts: create, transition, read (by service, never the whole table)."""

    def create(self, record: AuditRecord) -> None:
        """Write a new attempt; its ``requested_at`` is stored in UTC (the index order)."""
        record = dataclasses.replace(record, requested_at=in_utc(record.requested_at))
        item = codec.to_item_fields(record)
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(audit_id)",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                raise AlreadyRecordedError(
                    f"audit record {record.audit_id} already exists"
                ) from exc
            raise aws.translate(exc, f"write audit record {record.audit_id}") from exc

    def transition(self, audit_id: str, new: Status, **fields: Any) -> None:
        """Move to ``new`` (only from an allowed status), setting ``fields`` too."""
        sets = ["#status = :new", "transitions = list_append(transitions, :tr)"]
        values: dict[str, Any] = {
            ":new": new.value,
            ":tr": [{"status": new.value, "at": ts_key(utcnow())}],
        }
        preds = sorted(s.value for s in allowed_predecessors(new))
        for i, pred in enumerate(preds):
            values[f":p{i}"] = pred
        names = {"#status": "status"}
        for i, (key, value) in enumerate(fields.items()):
            if value is None:
                continue
            names[f"#f{i}"] = key
            values[f":f{i}"] = codec.encode_field(key, value)
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
            if conditional_failed(exc):
                raise AlreadyRecordedError(
                    f"audit record {audit_id} cannot move to {new.value} from its current status"
                ) from exc
            raise aws.translate(exc, f"update audit record {audit_id}") from exc

    def get(self, audit_id: str) -> AuditRecord | None:
        item = self.read_item(audit_id, f"read audit record {audit_id}")
        return codec.from_fields(item) if item else None

    def recent(
        self, environment: str, service: str, since: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Attempts for one service, newest first (optionally only since ``since``)."""
        cond = "service_key = :k"
        values: dict[str, Any] = {":k": service_key(environment, service)}
        if since:
            cond += " AND requested_at >= :since"
            values[":since"] = ts_key(in_utc(since))
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
        return [codec.from_fields(from_item(i)) for i in out.get("Items", [])]

    def attempts_since(
        self, services: Iterable[tuple[str, str]], since: datetime
    ) -> list[AuditRecord]:
        """``requested_since`` of each ``(environment, service)``, sent side by side."""
        found = side_by_side(lambda pair: self.requested_since(*pair, since), services)
        return [attempt for attempts in found for attempt in attempts]

    def requested_since(self, environment: str, service: str, since: datetime) -> list[AuditRecord]:
        """Every attempt of one service requested at or after ``since``, oldest first:
        a Query of the by-service index (``requested_at`` is UTC, fixed width, so text
        order is time order), paged to the end."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": BY_SERVICE,
            "KeyConditionExpression": "service_key = :k AND requested_at >= :since",
            "ExpressionAttributeValues": to_item(
                {":k": service_key(environment, service), ":since": ts_key(in_utc(since))}
            ),
        }
        items: list[AuditRecord] = []
        while True:
            try:
                out = self.client.query(**kwargs)
            except ClientError as exc:
                raise aws.translate(exc, f"query audit log for {environment}/{service}") from exc
            for raw in out.get("Items", []):
                data = from_item(raw)
                if data.get("record_type") == "attempt":
                    items.append(codec.from_fields(data))
            if "LastEvaluatedKey" not in out:
                return items
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
