"""Shared DynamoDB plumbing: table checks/creation and (de)serialisation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import MissingTableError

log = logging.getLogger(__name__)
_SER = TypeSerializer()
_T = TypeVar("_T")
_R = TypeVar("_R")
# Small Queries (one per service) are mostly round trips: a store sends them side by side.
QUERY_WORKERS = 8


def side_by_side(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``fn`` of each item, ``QUERY_WORKERS`` at a time, in the items' order."""
    with ThreadPoolExecutor(max_workers=QUERY_WORKERS) as pool:
        return list(pool.map(fn, items))


_DESER = TypeDeserializer()


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_DESER.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


class DynamoTable(aws.AwsAdapter):
    """One DynamoDB table; the client is injected or built lazily."""

    service = "dynamodb"

    key_schema: list[dict[str, str]] = []
    attributes: list[dict[str, str]] = []
    indexes: list[dict[str, Any]] = []
    ttl_attribute: str | None = None

    def __init__(self, table: str, client: Any = None, credentials_block: str | None = None):
        super().__init__(client, credentials_block)
        self.table = table

    def ensure(self, create: bool) -> None:
        """Check the table exists; create it (and wait) when ``create`` is set."""
        try:
            self.client.describe_table(TableName=self.table)
            return
        except ClientError as exc:
            if aws.error_code(exc) != "ResourceNotFoundException":
                raise aws.translate(exc, f"describe table {self.table}") from exc
        if not create:
            raise MissingTableError(
                f"DynamoDB table {self.table!r} does not exist: create it, or set "
                "stores.create_tables: true in the config"
            )
        log.info("creating DynamoDB table %s", self.table)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attributes,
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = self.indexes
        try:
            self.client.create_table(**kwargs)
        except ClientError as exc:
            if aws.error_code(exc) != "ResourceInUseException":  # created meanwhile
                raise aws.translate(exc, f"create table {self.table}") from exc
        self.client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        if self.ttl_attribute:
            self.client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": self.ttl_attribute},
            )
