"""The deployment history (DynamoDB): one item per deploy or rollback of a service.

Partition ``env#service``, sort key ``started_at#record_id``; a GSI by environment
serves whole-environment listings; ``expires_at`` is a TTL attribute 90 days out.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.models import DeploymentRecord, parse_iso, utcnow
from rollback.stores._dynamo import DynamoTable, from_item, to_item

log = logging.getLogger(__name__)
BY_ENVIRONMENT = "by-environment"
RECORD_FIELDS = (
    "environment",
    "service",
    "version",
    "status",
    "kind",
    "image_tag",
    "commit_sha",
    "committed_at",
    "started_at",
    "finished_at",
    "from_version",
    "trigger",
    "record_id",
    "schema_version",
    "min_schema_version",
    "max_schema_version",
)
_TIME_FIELDS = ("committed_at", "started_at", "finished_at")


def _ts(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="microseconds") if ts else None


def record_to_dict(record: DeploymentRecord) -> dict[str, Any]:
    data = {f: getattr(record, f) for f in RECORD_FIELDS}
    for f in _TIME_FIELDS:
        data[f] = _ts(data[f])
    return data


def record_from_dict(data: dict[str, Any]) -> DeploymentRecord:
    """Build a record from a plain mapping (a stored item or an import line);
    ValueError names the field that is wrong."""
    missing = [f for f in ("environment", "service", "version", "status") if not data.get(f)]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    if data["status"] not in ("success", "failed"):
        raise ValueError(f"status must be success or failed, not {data['status']!r}")
    kind = data.get("kind") or "deploy"
    if kind not in ("deploy", "rollback"):
        raise ValueError(f"kind must be deploy or rollback, not {kind!r}")
    unknown = set(data) - set(RECORD_FIELDS) - {"pk", "sk", "expires_at"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    times = {}
    for f in _TIME_FIELDS:
        try:
            times[f] = parse_iso(data.get(f))
        except (TypeError, ValueError):
            raise ValueError(f"{f} is not an ISO timestamp: {data.get(f)!r}") from None
    kwargs = {f: data.get(f) for f in RECORD_FIELDS if f not in _TIME_FIELDS}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs["kind"] = kind
    for f in ("schema_version", "min_schema_version", "max_schema_version"):
        if f in kwargs:
            kwargs[f] = int(kwargs[f])
    return DeploymentRecord(**kwargs, **times)


class HistoryStore(DynamoTable):
    key_schema = [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    attributes = [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "environment", "AttributeType": "S"},
    ]
    indexes = [
        {
            "IndexName": BY_ENVIRONMENT,
            "KeySchema": [
                {"AttributeName": "environment", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    ttl_attribute = "expires_at"

    def __init__(self, *args: Any, ttl_days: int = 90, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ttl_days = ttl_days

    def _item(self, record: DeploymentRecord) -> dict[str, Any]:
        data = record_to_dict(record)
        when = record.started_at or record.finished_at or utcnow()
        data["pk"] = f"{record.environment}#{record.service}"
        data["sk"] = f"{_ts(when)}#{record.record_id}"
        data["expires_at"] = int(time.time() + self.ttl_days * 86400)
        return to_item(data)

    def append(self, record: DeploymentRecord) -> None:
        """Add one record; the same record_id twice is a no-op, never a duplicate."""
        try:
            self.client.put_item(TableName=self.table, Item=self._item(record))
        except ClientError as exc:
            raise aws.translate(exc, f"write history for {record.service}") from exc

    def import_many(self, records: list[DeploymentRecord]) -> int:
        """Bulk load (batch writes of 25, unprocessed items resent)."""
        for start in range(0, len(records), 25):
            requests = [
                {"PutRequest": {"Item": self._item(r)}} for r in records[start : start + 25]
            ]
            pending: dict[str, Any] = {self.table: requests}
            for attempt in range(8):
                try:
                    out = self.client.batch_write_item(RequestItems=pending)
                except ClientError as exc:
                    raise aws.translate(exc, "import history") from exc
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 2))
        return len(records)

    def query(
        self, environment: str, service: str | None = None, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Records newest first, for one service or (via the GSI) the whole environment."""
        if service:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :k",
                "ExpressionAttributeValues": to_item({":k": f"{environment}#{service}"}),
            }
        else:
            kwargs = {
                "IndexName": BY_ENVIRONMENT,
                "KeyConditionExpression": "environment = :e",
                "ExpressionAttributeValues": to_item({":e": environment}),
            }
        kwargs.update(TableName=self.table, ScanIndexForward=False)
        records: list[DeploymentRecord] = []
        while True:
            if limit:
                kwargs["Limit"] = limit - len(records)
            try:
                out = self.client.query(**kwargs)
            except ClientError as exc:
                raise aws.translate(exc, f"read history of {environment}") from exc
            records.extend(record_from_dict(from_item(i)) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out or (limit and len(records) >= limit):
                return records
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def scan_items(self, segments: int = 4) -> list[dict[str, Any]]:
        """Every record as a plain dict, read by a parallel scan of ``segments`` workers
        (big tables are not read in one long sequential scan)."""

        def segment(n: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "Segment": n,
                "TotalSegments": segments,
            }
            while True:
                try:
                    out = self.client.scan(**kwargs)
                except ClientError as exc:
                    raise aws.translate(exc, f"scan history table {self.table}") from exc
                rows.extend(from_item(i) for i in out.get("Items", []))
                if "LastEvaluatedKey" not in out:
                    return rows
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

        _ = self.client  # build the client once, before the threads share it
        with ThreadPoolExecutor(max_workers=segments) as pool:
            parts = list(pool.map(segment, range(segments)))
        return [row for part in parts for row in part]
