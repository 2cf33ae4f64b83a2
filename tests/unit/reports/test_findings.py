"""Findings that name what to do, DORA bands at their thresholds, the retention warning,
weekly trends and CloudWatch error rates (hand-computed expectations)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reports.cloudwatch import MetricSeries, error_rates
from reports.findings import band, retention_warnings
from reports.metrics import Window
from tests.unit.reports.builders import NOW, at, attempt, deploy, report, rollback


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("changeFailureRatePercent", 15.0, "elite"),
        ("changeFailureRatePercent", 15.01, "high/medium/low"),
        ("changeFailureRatePercent", 30.0, "high/medium/low"),
        ("changeFailureRatePercent", 30.5, "below the reported ranges"),
        ("timeToRestoreHoursMedian", 1.0, "elite"),
        ("timeToRestoreHoursMedian", 1.01, "high"),
        ("timeToRestoreHoursMedian", 24.0, "high"),
        ("timeToRestoreHoursMedian", 200.0, "low"),
        ("deploymentFrequencyPerDay", 1.0, "elite"),
        ("deploymentFrequencyPerDay", 0.999, "high"),
        ("deploymentFrequencyPerDay", 1 / 30, "high"),
        ("deploymentFrequencyPerDay", 0.01, "medium"),
        ("deploymentFrequencyPerDay", 0.0, "low"),
        ("leadTimeHoursMedian", 1.0, "elite"),
        ("leadTimeHoursMedian", 168.0, "high"),
        ("leadTimeHoursMedian", None, None),
    ],
)
def test_bands_at_their_thresholds(key: str, value: float | None, expected: str | None) -> None:
    assert band(key, value) == expected


def test_unrestored_failure_is_named_with_its_age_and_attempts() -> None:
    # GIVEN search:29 failed 48 h before now, and a refused rollback attempt on it after
    records = [
        deploy("search", "search:28", -100),
        deploy("search", "search:29", -48, status="failed"),
    ]
    attempts = [attempt("refused", -47, audit_id="a-refused") | {"service": "search"}]
    # WHEN the report is computed
    doc = report(records, attempts).document
    # THEN the finding names the service, version, since when, how long, the audit id
    (u,) = doc["findings"]["unrestored"]
    assert u["service"] == "prod/search" and u["version"] == "search:29"
    assert u["since"] == "2024-05-30T09:00:00Z" and u["openHours"] == 48.0
    assert u["auditIds"] == ["a-refused"]
    (r,) = doc["findings"]["refused"]
    assert r["auditId"] == "a-refused" and r["service"] == "prod/search"
    # AND events trace the failure to its record id
    assert [e["recordId"] for e in doc["events"]] == ["d-search-search:29--48"]


def test_fix_forward_and_rollback_restores_are_told_apart() -> None:
    records = [
        deploy("api", "v1", -30),
        deploy("api", "v2", -20, status="failed"),
        deploy("api", "v3", -18),  # fix-forward after 2 h
        deploy("web", "w1", -30),
        deploy("web", "w2", -10),
        rollback("web", "w2", "w1", -9.5),  # rollback after 0.5 h
    ]
    by = report(records).document["findings"]["restoredBy"]
    assert by == {
        "fixForward": {"count": 1, "hoursMedian": 2.0},
        "rollback": {"count": 1, "hoursMedian": 0.5},
    }


def test_stale_services_are_named_even_with_no_record() -> None:
    records = [deploy("legacy", "l1", -45 * 24), deploy("api", "v1", -5)]
    doc = report(records, days=30).document  # reads 60 days back
    stale = {s["service"]: s["daysSinceDeploy"] for s in doc["findings"]["stale"]}
    assert stale == {"prod/legacy": 45.0}
    known = report(records, days=30, known_services=["api", "ghost"]).document
    stale = {s["service"]: s["lastDeploy"] for s in known["findings"]["stale"]}
    assert stale == {"prod/ghost": None, "prod/legacy": "2024-04-17T09:00:00Z"}


def test_retention_warning_when_the_previous_period_reaches_past_it() -> None:
    assert retention_warnings(Window.ending(NOW, 45), 90) == []
    (warning,) = retention_warnings(Window.ending(NOW, 60), 90)
    assert "2024-02-02T09:00:00Z" in warning and "90-day retention" in warning


def test_weekly_trends_cover_the_window_in_seven_day_periods() -> None:
    records = [deploy("api", f"v{i}", -24 * i - 1) for i in range(10)]
    weeks = report(records, days=14).document["weeklyTrends"]
    assert [w["to"] for w in weeks] == ["2024-05-25T09:00:00Z", "2024-06-01T09:00:00Z"]
    assert [w["deployments"] for w in weeks] == [3, 7]
    assert weeks[1]["deploymentFrequencyPerDay"] == 1.0


def test_error_rates_name_breaches_and_the_deploys_near_them() -> None:
    hours = tuple(at(-h) for h in (3, 2, 1))

    def series(name: str, values: tuple[float, ...]) -> MetricSeries:
        return MetricSeries("api", name, "AWS/Lambda", name, "Sum", (), hours, values)

    deploys = [{"service": "api", "version": "v9", "finishedAt": "2024-06-01T07:30:00Z"}]
    (rate,) = error_rates(
        [series("Errors", (1, 12, 0)), series("Invocations", (100, 100, 100))], deploys
    )
    # 12 % in the hour of 07:00 (threshold 5 %), 13/300 = 4.33 % overall
    assert rate["overallPercent"] == 4.33 and rate["thresholdPercent"] == 5.0
    (breach,) = rate["breaches"]
    assert breach["hour"] == "2024-06-01T07:00:00Z" and breach["percent"] == 12.0
    assert breach["deploysNear"] == deploys
    assert at(-2) - timedelta(minutes=30) < at(-1)
