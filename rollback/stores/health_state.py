"""Health-guard state (DynamoDB, the audit table): consecutive failures per service, so
the count survives restarts of the guard. One item per service, ``health#env#service``."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from rollback import aws
from rollback.models import iso, utcnow
from rollback.stores._dynamo import from_item, to_item
from rollback.stores.audit_table import AuditTable, service_key


@dataclass(frozen=True)
class HealthState:
    """``failures`` in a row; ``since`` is when the current failing streak began."""

    failures: int = 0
    since: str | None = None
    detail: str = ""


def _key(environment: str, service: str) -> dict[str, object]:
    return to_item({"audit_id": f"health#{service_key(environment, service)}"})


class HealthStateStore(AuditTable):
    def record(self, environment: str, service: str, healthy: bool, detail: str) -> HealthState:
        """Count one probe result: a failure adds one (and starts a streak), a success
        resets to zero. Returns the state after the update (one atomic UpdateItem)."""
        if healthy:
            expression = "SET failures = :zero, detail = :d, record_type = :t REMOVE since"
            values = {":zero": 0, ":d": detail, ":t": "health"}
        else:
            expression = (
                "SET failures = if_not_exists(failures, :zero) + :one, "
                "since = if_not_exists(since, :now), detail = :d, record_type = :t"
            )
            values = {":zero": 0, ":one": 1, ":now": iso(utcnow()), ":d": detail, ":t": "health"}
        try:
            out = self.client.update_item(
                TableName=self.table,
                Key=_key(environment, service),
                UpdateExpression=expression,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise aws.translate(exc, f"record health of {environment}/{service}") from exc
        return _state(from_item(out.get("Attributes", {})))

    def get(self, environment: str, service: str) -> HealthState:
        try:
            out = self.client.get_item(
                TableName=self.table, Key=_key(environment, service), ConsistentRead=True
            )
        except ClientError as exc:
            raise aws.translate(exc, f"read health of {environment}/{service}") from exc
        return _state(from_item(out["Item"])) if "Item" in out else HealthState()


def _state(data: dict[str, object]) -> HealthState:
    return HealthState(
        failures=int(data.get("failures", 0) or 0),  # type: ignore[call-overload]
        since=str(data["since"]) if data.get("since") else None,
        detail=str(data.get("detail", "")),
    )
