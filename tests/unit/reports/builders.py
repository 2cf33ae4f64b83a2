"""Small hand-written datasets: times are hours relative to NOW."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from reports.load import audit_frame, records_frame
from reports.metrics import Report, compute
from rollback.models import DeploymentRecord

NOW = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def deploy(
    service: str,
    version: str,
    hours: float,
    status: str = "success",
    took_s: float | None = 60,
    commit_h: float | None = None,
    env: str = "prod",
) -> DeploymentRecord:
    """A deploy finishing ``hours`` from NOW (negative: before), taking ``took_s``."""
    finished = at(hours)
    return DeploymentRecord(
        environment=env,
        service=service,
        version=version,
        status=status,  # type: ignore[arg-type]
        started_at=finished - timedelta(seconds=took_s) if took_s is not None else None,
        finished_at=finished,
        committed_at=at(commit_h) if commit_h is not None else None,
        record_id=f"d-{service}-{version}-{hours}",
    )


def rollback(
    service: str,
    from_version: str,
    to_version: str,
    hours: float,
    status: str = "success",
    trigger: str = "manual",
    env: str = "prod",
) -> DeploymentRecord:
    finished = at(hours)
    return DeploymentRecord(
        environment=env,
        service=service,
        version=to_version,
        status=status,  # type: ignore[arg-type]
        kind="rollback",
        from_version=from_version,
        trigger=trigger,
        started_at=finished - timedelta(seconds=30),
        finished_at=finished,
        record_id=f"r-{service}-{from_version}-{hours}",
    )


def attempt(
    status: str,
    requested_h: float,
    took_s: float = 120,
    trigger: str = "manual",
    env: str = "prod",
    dry_run: bool = False,
    audit_id: str | None = None,
) -> dict[str, Any]:
    requested = at(requested_h)
    return {
        "audit_id": audit_id or f"a-{status}-{requested_h}-{trigger}",
        "environment": env,
        "service": "api",
        "status": status,
        "trigger": trigger,
        "requested_at": requested,
        "finished_at": requested + timedelta(seconds=took_s),
        "dry_run": dry_run,
    }


def report(
    records: list[DeploymentRecord],
    attempts: list[dict[str, Any]] | None = None,
    days: int = 30,
    env: str = "prod",
    now: datetime = NOW,
    known_services: list[str] | None = None,
) -> Report:
    return compute(
        records_frame(records),
        audit_frame(attempts or []),
        env,
        now,
        days,
        known_services=known_services or (),
    )


def history(records: list[DeploymentRecord]) -> pd.DataFrame:
    return records_frame(records)
