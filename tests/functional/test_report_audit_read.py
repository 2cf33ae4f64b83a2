"""The report's read of the audit log against the moto server: only the attempts it can
count (one Query of the by-service index per service, from the start of what the report
reads), and the same numbers as a read of every attempt in the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import yaml

from reports import pipeline
from reports.load import audit_frame
from reports.metrics import reads_from
from rollback.config import load_config
from rollback.models import AuditRecord, DeploymentRecord, Status
from rollback.runtime import Runtime
from rollback.stores import audit_codec
from rollback.stores._dynamo import from_item

# "now" of the report: a whole hour, 1-2 hours ahead (an attempt the store ends during the
# test is inside the window)
NOW = pd.Timestamp(
    datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
)
DAYS = 7
SINCE = reads_from(NOW, DAYS).to_pydatetime()  # NOW - 30 days: the window starts NOW - 7 days
NY = timezone(timedelta(hours=-5))


def runtime(tmp_path: Path) -> Runtime:
    config = {
        "stores": {"history_table": "hist", "audit_table": "audit", "create_tables": True},
        "environments": {
            "prod": {"services": {s: {"type": "ecs", "cluster": "c", "service": s}
                                  for s in ("api", "web")}},
            "staging": {"services": {"api": {"type": "ecs", "cluster": "c", "service": "api"}}},
        },
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    rt = Runtime(load_config(path))
    rt.ensure_tables()
    return rt


def attempt(
    audit_id: str, service: str, status: Status, requested: datetime, **kw: Any
) -> AuditRecord:
    """An attempt in ``status`` since its request (a final one ended then)."""
    return AuditRecord(
        audit_id, kw.pop("environment", "prod"), service, status, requested_at=requested, **kw
    )


def deploy(
    service: str, version: str, finished: datetime, status: str = "success"
) -> DeploymentRecord:
    return DeploymentRecord(
        environment="prod",
        service=service,
        version=version,
        status=status,  # type: ignore[arg-type]
        started_at=finished - timedelta(minutes=3),
        finished_at=finished,
        record_id=f"prod-{service}-{version}",
    )


def every_attempt(table: str) -> pd.DataFrame:
    """Every attempt in the table, read independently of the product's read (a Scan)."""
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    rows = [from_item(i) for i in items]
    return audit_frame(
        audit_codec.from_fields(r) for r in rows if r.get("record_type") == "attempt"
    )


def test_the_audit_read_starts_where_the_report_reads_and_counts_the_same(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN prod's history (api failed 3 days ago; legacy, no longer configured, deployed
    # 5 days ago) and attempts on each side of the read's start (NOW - 30 days)
    rt = runtime(tmp_path)
    end = NOW.to_pydatetime()
    rt.history.import_many(
        [
            deploy("api", "v1", end - timedelta(days=10)),
            deploy("api", "v2", end - timedelta(days=3), status="failed"),
            deploy("legacy", "l1", end - timedelta(days=5)),
        ]
    )
    just_before = SINCE - timedelta(microseconds=1)
    for record in (
        # requested 1 µs before the read's start: not read (nor counted: long before the window)
        attempt("before", "api", Status.SUCCEEDED, just_before),
        # requested exactly at the start: read (not counted: it ended before the window)
        attempt("at-start", "api", Status.REFUSED, SINCE),
        # requested just after the start, still executing (its end comes below)
        attempt("late", "web", Status.EXECUTING, SINCE + timedelta(seconds=1)),
        # requested 2 h after the start, written with a New York offset (local text 3 h
        # before the start): the store keeps it in UTC, so the range finds it
        attempt("offset", "api", Status.EXECUTING, (SINCE + timedelta(hours=2)).astimezone(NY)),
        attempt("inside", "api", Status.SUCCEEDED, end - timedelta(days=2), trigger="alarm"),
        attempt("gone", "legacy", Status.SUCCEEDED, end - timedelta(days=4)),
        attempt(
            "other-env", "api", Status.SUCCEEDED, end - timedelta(days=1), environment="staging"
        ),
    ):
        rt.audit.create(record)
    # the two long ones end now, inside the window: one found interrupted, one failed
    rt.audit.transition("late", Status.INTERRUPTED)
    rt.audit.transition("offset", Status.FAILED)
    history = pipeline.read_history(rt, ["prod"], NOW, DAYS)

    # WHEN the report of prod reads the audit log
    audit = pipeline.read_audit(rt, ["prod"], NOW, DAYS, history)

    # THEN it read prod's attempts requested from the start on, of the configured services
    # and of legacy (seen in the history), and nothing before the start
    assert sorted(audit["audit_id"]) == ["at-start", "gone", "inside", "late", "offset"]
    offset = audit.loc[audit["audit_id"] == "offset", "requested_at"].iloc[0]
    assert offset == pd.Timestamp(SINCE + timedelta(hours=2))
    # AND every number is the one a read of every attempt in the table gives
    ours = pipeline.compute_for(rt.config, history, audit, "prod", NOW, DAYS).document
    every = every_attempt("audit")
    assert len(every) == 7
    theirs = pipeline.compute_for(rt.config, history, every, "prod", NOW, DAYS).document
    assert ours == theirs
    rollbacks = ours["rollbacks"]
    assert (rollbacks["count"], rollbacks["succeeded"], rollbacks["failed"]) == (4, 2, 1)
    assert rollbacks["interrupted"] == 1 and rollbacks["refused"] == 0
    (unrestored,) = ours["findings"]["unrestored"]
    assert unrestored["recordId"] == "prod-api-v2" and unrestored["auditIds"] == ["inside"]
