"""A deployment record for the history store's tests: finished at a given time, two
minutes long, the rest defaulted (prod, api, success, version ``v-<id>``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from rollback.models import DeploymentRecord


def record(
    record_id: str, finished: datetime, service: str = "api", **kw: object
) -> DeploymentRecord:
    return DeploymentRecord(
        environment=kw.pop("environment", "prod"),  # type: ignore[arg-type]
        service=service,
        version=kw.pop("version", f"v-{record_id}"),  # type: ignore[arg-type]
        status=kw.pop("status", "success"),  # type: ignore[arg-type]
        started_at=finished - timedelta(minutes=2),
        finished_at=finished,
        record_id=record_id,
        **kw,  # type: ignore[arg-type]
    )
