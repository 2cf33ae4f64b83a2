"""RDS snapshots, for the migration gate: when was the newest one taken?"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from rollback import aws


class RdsSnapshots(aws.AwsAdapter):
    service = "rds"

    def latest(self, prefix: str) -> datetime | None:
        """Creation time of the newest available snapshot whose id starts with prefix."""
        newest: datetime | None = None
        try:
            for page in self.client.get_paginator("describe_db_snapshots").paginate():
                for snap in page.get("DBSnapshots", []):
                    if not snap["DBSnapshotIdentifier"].startswith(prefix):
                        continue
                    if snap.get("Status", "available") != "available":
                        continue
                    created = snap.get("SnapshotCreateTime")
                    if created and (newest is None or created > newest):
                        newest = created
        except ClientError as exc:
            raise aws.translate(exc, f"list RDS snapshots {prefix}*") from exc
        return newest
