"""The metric summaries, the metrics document and which metrics a service gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from reports.cloudwatch import MetricSeries, metric_queries, metrics_document, summarize
from rollback.config.reporting import MetricSpec, ReportsConfig


def test_summary_of_hourly_datapoints() -> None:
    # GIVEN 1..20: sum 210, mean 10.5, max 20, p95 at rank 18.05 -> 19.05
    assert summarize([float(v) for v in range(1, 21)]) == {
        "datapoints": 20,
        "sum": 210.0,
        "avg": 10.5,
        "max": 20.0,
        "p95": 19.05,
    }


def test_summary_of_no_datapoints_is_null() -> None:
    assert summarize([]) == {"datapoints": 0, "sum": None, "avg": None, "max": None, "p95": None}


def test_metrics_document_groups_by_service_and_metric() -> None:
    t = datetime(2024, 6, 1, 8, tzinfo=UTC)
    series = [
        MetricSeries(
            "api", "errors", "AWS/Lambda", "Errors", "Sum", (("FunctionName", "api"),), (t,), (3.0,)
        ),
        MetricSeries("api", "Duration", "AWS/Lambda", "Duration", "Average", (), (), ()),
    ]
    doc = metrics_document("prod", {"days": 1}, "2024-06-01T09:00:00Z", series)
    errors = doc["services"]["api"]["errors"]
    assert errors["datapoints"] == [{"timestamp": "2024-06-01T08:00:00Z", "value": 3.0}]
    assert errors["dimensions"] == {"FunctionName": "api"}
    assert errors["summary"]["sum"] == 3.0
    assert doc["services"]["api"]["Duration"]["summary"]["datapoints"] == 0


def test_exact_env_service_key_wins_over_service_name() -> None:
    cfg = ReportsConfig(
        metrics={
            "api": [MetricSpec(namespace="AWS/Lambda", name="Errors")],
            "prod/api": [MetricSpec(namespace="AWS/ApiGateway", name="5XXError", label="5xx")],
            "prod/worker": [MetricSpec(namespace="AWS/ECS", name="CPUUtilization", stat="Average")],
        }
    )
    assert [m.key for m in cfg.metrics_for("prod", "api")] == ["5xx"]
    assert [m.key for m in cfg.metrics_for("staging", "api")] == ["Errors"]
    assert cfg.metrics_for("staging", "web") == []
    # AND a service configured only under env/service is fetched even without history
    queries = metric_queries(cfg, "prod", {"api", "web"})
    assert [(q.service, q.spec.name) for q in queries] == [
        ("api", "5XXError"),
        ("worker", "CPUUtilization"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("s3_prefix", "bucket/prefix", "s3://bucket/prefix"),
        ("days", 0, "greater than 0"),
    ],
)
def test_reports_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReportsConfig(**{field: value})


def test_metric_stat_is_one_cloudwatch_knows() -> None:
    with pytest.raises(ValidationError):
        MetricSpec(namespace="AWS/Lambda", name="Errors", stat="p95")  # type: ignore[arg-type]
