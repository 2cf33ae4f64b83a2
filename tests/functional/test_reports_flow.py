"""The metrics report end to end against the moto server: history and audit log in
DynamoDB, metrics in CloudWatch, files on disk and in S3, through the CLI and the flow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from deployments.cli.main import app
from rollback.config.reporting import MetricSpec
from rollback.models import AuditRecord, DeploymentRecord, Status
from rollback.report_metrics import CloudWatchMetrics, MetricQuery
from rollback.stores.audit import AuditStore
from rollback.stores.history import HistoryStore

# "now" of the report: recent, on the hour (CloudWatch data is recent in real life too)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
STAMP = NOW.strftime("%Y%m%d-%H%M%S")
NOW_ISO = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
LAMBDA_ERRORS = {"namespace": "AWS/Lambda", "name": "Errors", "stat": "Sum"}


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def _deploy(env: str, service: str, version: str, hours: float, **kw: object) -> DeploymentRecord:
    return DeploymentRecord(
        environment=env,
        service=service,
        version=version,
        status=kw.pop("status", "success"),  # type: ignore[arg-type]
        started_at=at(hours) - timedelta(seconds=100),
        finished_at=at(hours),
        record_id=f"{env}-{service}-{version}-{hours}",
        **kw,  # type: ignore[arg-type]
    )


def seed_world(tmp_path: Path, s3: bool = True) -> Path:
    """Tables, history, audit attempts, CloudWatch datapoints, a bucket; the config."""
    config = {
        "stores": {"history_table": "hist", "audit_table": "audit", "create_tables": True},
        "environments": {
            env: {"services": {"api": {"type": "ecs", "cluster": "c", "service": "api"}}}
            for env in ("prod", "staging")
        },
        "reports": {
            "out_dir": str(tmp_path / "default-out"),
            "s3_prefix": "s3://reports-bucket/daily" if s3 else None,
            "timezone": "Europe/Paris",
            "metrics": {
                "prod/api": [{**LAMBDA_ERRORS, "dimensions": {"FunctionName": "api"}}],
                "api": [{**LAMBDA_ERRORS, "dimensions": {"FunctionName": "api-other"}}],
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    history, audit = HistoryStore("hist"), AuditStore("audit")
    history.ensure(create=True)
    audit.ensure(create=True)
    history.import_many(
        [
            _deploy("prod", "api", "v1", -50, committed_at=at(-52)),
            _deploy("prod", "api", "v2", -10, committed_at=at(-14)),
            DeploymentRecord(
                environment="prod",
                service="api",
                version="v1",
                status="success",
                kind="rollback",
                from_version="v2",
                trigger="alarm",
                started_at=at(-8.1),
                finished_at=at(-8),
                record_id="rb-1",
            ),
            _deploy("prod", "api", "v3", -5, status="failed"),
            _deploy("prod", "api", "v4", -40 * 24),  # before the window
            _deploy("staging", "api", "s1", -3),
            _deploy("prod", "api", "v9", 1),  # after "now": not known yet
        ]
    )
    audit.create(
        AuditRecord("a1", "prod", "api", Status.SUCCEEDED, requested_at=at(-8.2), trigger="alarm")
    )
    audit.create(
        AuditRecord("a2", "prod", "api", Status.REFUSED, requested_at=at(-4), trigger="manual")
    )

    cw = boto3.client("cloudwatch")
    for hours, value in ((-3, 2.0), (-2, 5.0), (-2, 1.0), (-1, 0.0)):
        cw.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": "Errors",
                    "Dimensions": [{"Name": "FunctionName", "Value": "api"}],
                    "Timestamp": at(hours) + timedelta(minutes=10),
                    "Value": value,
                }
            ],
        )
    if s3:
        boto3.client("s3").create_bucket(Bucket="reports-bucket")
    return path


def test_cloudwatch_adapter_reads_hourly_series(aws: str) -> None:
    # GIVEN datapoints in three hours, two in the same hour
    cw = boto3.client("cloudwatch")
    for hours, value in ((-3, 2.0), (-2, 5.0), (-2, 1.0)):
        cw.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": "Errors",
                    "Dimensions": [{"Name": "FunctionName", "Value": "api"}],
                    "Timestamp": at(hours) + timedelta(minutes=10),
                    "Value": value,
                }
            ],
        )
    spec = MetricSpec(namespace="AWS/Lambda", name="Errors", dimensions={"FunctionName": "api"})
    missing = MetricSpec(namespace="AWS/Lambda", name="Throttles")
    # WHEN the adapter reads them hourly
    series = CloudWatchMetrics().series(
        [MetricQuery("api", spec), MetricQuery("api", missing)], at(-24), NOW
    )
    # THEN one value per hour (summed), oldest first, UTC; a metric without data is empty
    assert series[0].timestamps == (at(-3), at(-2))
    assert series[0].values == (2.0, 6.0)
    assert series[0].timestamps[0].tzinfo == UTC
    assert series[1].values == ()


def test_cli_report_writes_every_file_locally_and_to_s3(aws: str, tmp_path: Path) -> None:
    # GIVEN history, audit log and metrics in the moto server
    config = seed_world(tmp_path)
    out = tmp_path / "out"
    # WHEN the report runs for all environments with a fixed now
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--config",
            str(config),
            "--env",
            "all",
            "--days",
            "30",
            "--out",
            str(out),
            "--now",
            NOW_ISO,
        ],
    )
    assert result.exit_code == 0, result.output
    # THEN each environment has its four files, named exactly
    expected = {
        f"{kind}-{env}-30d-{STAMP}.{ext}"
        for env in ("prod", "staging")
        for kind, ext in (
            ("deployment-stats", "json"),
            ("cloudwatch-metrics", "json"),
            ("deployment-summary", "md"),
            ("deployment-chart", "png"),
        )
    }
    assert {p.name for p in out.iterdir()} == expected
    stats = json.loads((out / f"deployment-stats-prod-30d-{STAMP}.json").read_text())
    assert stats["window"] == {
        "from": (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "to": NOW_ISO,
        "days": 30,
    }
    # v1, v2 (rolled back after 2 h), v3 (failed, never restored); v4 and v9 outside
    assert stats["stats"]["totalDeployments"] == 3
    assert stats["stats"]["successRate"] == 66.67
    assert stats["stats"]["averageDuration"] == 100.0
    assert stats["dora"]["changeFailures"] == 2
    assert stats["dora"]["changeFailureRatePercent"] == 66.67
    assert stats["dora"]["leadTimeHoursMedian"] == 3.0  # lead times 2 h and 4 h
    assert stats["dora"]["timeToRestoreHoursMedian"] == 2.0
    assert stats["dora"]["unrestoredCount"] == 1
    assert stats["rollbacks"]["count"] == 2
    assert stats["rollbacks"]["refused"] == 1
    assert stats["rollbacks"]["byTrigger"]["alarm"]["succeeded"] == 1
    assert stats["rollbacks"]["timeToRestoreHoursMedianByTrigger"]["alarm"] == 2.0
    assert stats["services"]["api"]["totalDeployments"] == 3
    staging = json.loads((out / f"deployment-stats-staging-30d-{STAMP}.json").read_text())
    assert staging["stats"]["totalDeployments"] == 1

    # AND the CloudWatch file has the hourly datapoints of prod/api and their summary
    metrics = json.loads((out / f"cloudwatch-metrics-prod-30d-{STAMP}.json").read_text())
    errors = metrics["services"]["api"]["Errors"]
    assert [p["value"] for p in errors["datapoints"]] == [2.0, 6.0, 0.0]
    assert errors["summary"] == {"datapoints": 3, "sum": 8.0, "avg": 2.6667, "max": 6.0, "p95": 5.6}
    # staging/api uses the service-wide key: another function, no data
    other = json.loads((out / f"cloudwatch-metrics-staging-30d-{STAMP}.json").read_text())
    assert other["services"]["api"]["Errors"]["dimensions"] == {"FunctionName": "api-other"}
    assert other["services"]["api"]["Errors"]["datapoints"] == []

    summary = (out / f"deployment-summary-prod-30d-{STAMP}.md").read_text()
    assert f"(deployment-chart-prod-30d-{STAMP}.png)" in summary
    assert "**Rule: change failure rate above 15%.**" in summary
    assert "| api | v2 → v1 | alarm | success | 2 h |" in summary
    assert "Europe/Paris" in summary
    assert (out / f"deployment-chart-prod-30d-{STAMP}.png").read_bytes()[:4] == b"\x89PNG"

    # AND the same files are under the S3 prefix
    listing = boto3.client("s3").list_objects_v2(Bucket="reports-bucket", Prefix="daily/")
    assert {o["Key"] for o in listing["Contents"]} == {f"daily/{n}" for n in expected}
    assert result.output.count("s3://reports-bucket/daily/") == 8


def test_a_daily_and_a_weekly_report_of_the_same_second_both_stay(aws: str, tmp_path: Path) -> None:
    # GIVEN history in the moto server and one output directory
    config = seed_world(tmp_path, s3=False)
    out = tmp_path / "out"
    # WHEN a daily and a weekly report end at the same second
    for days in ("1", "7"):
        result = CliRunner().invoke(
            app,
            ["report", "--config", str(config), "--env", "prod", "--days", days,
             "--out", str(out), "--now", NOW_ISO],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    # THEN both reports' four files are there, each named by its window
    assert len(list(out.iterdir())) == 8
    for days in (1, 7):
        stats = json.loads((out / f"deployment-stats-prod-{days}d-{STAMP}.json").read_text())
        assert stats["window"]["days"] == days


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "qa"], "unknown environment 'qa'"),
        (["--now", "last tuesday"], "--now must be an ISO timestamp"),
        (["--days", "0"], "days must be positive"),
    ],
)
def test_cli_report_user_errors_exit_2_with_one_line(
    aws: str, tmp_path: Path, args: list[str], message: str
) -> None:
    config = seed_world(tmp_path, s3=False)
    result = CliRunner().invoke(
        app, ["report", "--config", str(config), "--out", str(tmp_path / "o"), *args]
    )
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_cli_report_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("reports: {timezone: Mars/Olympus}\nenvironments: {}\n")
    result = CliRunner().invoke(app, ["report", "--config", str(bad), "--env", "prod"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_flow_writes_files_and_artifacts(aws: str, tmp_path: Path, prefect_server: None) -> None:
    from prefect.artifacts import Artifact

    from flows.metrics_report import metrics_report

    # GIVEN the same world
    config = seed_world(tmp_path, s3=False)
    out = tmp_path / "flow-out"
    # WHEN the flow runs for prod over 7 days
    written = metrics_report(
        environment="prod", days=7, out_dir=str(out), config_path=str(config), now=NOW_ISO
    )
    # THEN it wrote the four files and returns where
    assert sorted(Path(p).name for p in written["prod"]) == sorted(
        [
            f"cloudwatch-metrics-prod-7d-{STAMP}.json",
            f"deployment-chart-prod-7d-{STAMP}.png",
            f"deployment-stats-prod-7d-{STAMP}.json",
            f"deployment-summary-prod-7d-{STAMP}.md",
        ]
    )
    stats = json.loads((out / f"deployment-stats-prod-7d-{STAMP}.json").read_text())
    assert stats["window"]["days"] == 7
    assert stats["stats"]["totalDeployments"] == 3
    # AND the summary and the per-service table are Prefect artifacts
    summary = Artifact.get("deployment-summary-prod")
    assert summary is not None and "# Deployment summary — prod" in str(summary.data)
    table = Artifact.get("deployment-services-prod")
    assert table is not None
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert rows[0]["service"] == "api" and rows[0]["totalDeployments"] == 3
