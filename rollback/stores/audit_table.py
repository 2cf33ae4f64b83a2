"""The audit table (DynamoDB): one item per rollback attempt, plus the per-service
lease lock (``locks.py``), the bad-version ledger and event claims (``markers.py``).
This module holds what they share: the table layout and key helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.stores._dynamo import DynamoTable, from_item, to_item

BY_SERVICE = "by-service"


def service_key(environment: str, service: str) -> str:
    return f"{environment}#{service}"


def ts_key(ts: datetime) -> str:
    """Fixed-width ISO text: sorts like the time it names (same offset)."""
    return ts.isoformat(timespec="microseconds")


def conditional_failed(exc: ClientError) -> bool:
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

    def read_item(self, key: str, what: str) -> dict[str, Any] | None:
        """One item by its key (consistent read), decoded; None if absent."""
        try:
            out = self.client.get_item(
                TableName=self.table, Key=to_item({"audit_id": key}), ConsistentRead=True
            )
        except ClientError as exc:
            raise aws.translate(exc, what) from exc
        return from_item(out["Item"]) if "Item" in out else None
