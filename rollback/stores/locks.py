"""Per-(environment, service) lease lock in the audit table: at most one rollback in
flight, across processes and hosts."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import LockHeldError
from rollback.stores._dynamo import to_item
from rollback.stores.audit_table import AuditTable, conditional_failed, service_key


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
            if conditional_failed(exc):
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
            if conditional_failed(exc):
                return  # someone else holds it now (our lease expired): nothing to release
            raise aws.translate(exc, f"unlock {environment}/{service}") from exc

    def holder(self, environment: str, service: str) -> str | None:
        item = self.read_item(
            f"lock#{service_key(environment, service)}",
            f"read the lock of {environment}/{service}",
        )
        if not item or item.get("lease_until", 0) < time.time() * 1000:
            return None
        return str(item.get("holder"))
