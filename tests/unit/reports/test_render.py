"""File names, JSON, the markdown summary, its recommendation rules, and the chart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from reports import chart, render
from reports.render import FileNames, recommendations, summary_markdown
from tests.unit.reports.builders import NOW, attempt, deploy, report, rollback


def _rules(records, attempts=None) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.rule for r in recommendations(report(records, attempts))]


def test_file_names_follow_the_documented_pattern() -> None:
    names = FileNames.of("prod", 7, pd.Timestamp("2024-06-01T09:05:07Z"))
    assert names.stats == "deployment-stats-prod-7d-20240601-090507.json"
    assert names.metrics == "cloudwatch-metrics-prod-7d-20240601-090507.json"
    assert names.summary == "deployment-summary-prod-7d-20240601-090507.md"
    assert names.chart == "deployment-chart-prod-7d-20240601-090507.png"
    # AND a time in another zone is named by its UTC time
    tokyo = pd.Timestamp("2024-06-01T18:05:07+09:00")
    assert FileNames.of("prod", 7, tokyo) == names


def test_file_names_of_windows_ending_in_the_same_second_differ() -> None:
    # GIVEN a daily and a weekly report of one environment generated in the same second
    at = pd.Timestamp("2024-06-03T09:00:00Z")
    daily, weekly = FileNames.of("prod", 1, at), FileNames.of("prod", 7, at)
    # THEN none of their files has the same name (neither overwrites the other)
    assert {daily.stats, daily.metrics, daily.summary, daily.chart}.isdisjoint(
        {weekly.stats, weekly.metrics, weekly.summary, weekly.chart}
    )


def test_json_has_the_documented_shape_and_no_nan() -> None:
    r = report([deploy("api", "v1", -2, status="failed")])
    doc = json.loads(render.to_json(r.document))
    assert set(doc) >= {
        "environment",
        "generatedAt",
        "window",
        "stats",
        "recentTrends",
        "dora",
        "rollbacks",
        "services",
        "definitions",
    }
    assert set(doc["recentTrends"]) == {"last7Days", "last30Days"}
    assert set(doc["services"]["api"]) == set(doc["stats"])
    assert doc["dora"]["timeToRestoreHoursMedian"] is None  # NaN became null


def test_change_failure_rate_rule_fires_strictly_above_15_percent() -> None:
    # GIVEN 20 deploys: 3 failed is exactly 15 %, 4 failed is 20 %
    ok = [deploy("api", f"v{i}", -100 + i) for i in range(17)]
    three = [deploy("web", f"f{i}", -50 + i, status="failed") for i in range(3)]
    assert "change failure rate above 15%" not in _rules(ok + three)
    four = [deploy("web", f"f{i}", -50 + i, status="failed") for i in range(4)]
    recs = recommendations(report(ok[:16] + four))
    fired = [r for r in recs if r.rule == "change failure rate above 15%"]
    assert len(fired) == 1
    assert "4 of 20 deployments" in fired[0].finding
    assert "(20%)" in fired[0].finding


def test_time_to_restore_rule_fires_above_one_hour() -> None:
    quick = [deploy("api", "v2", -10), rollback("api", "v2", "v1", -9)]  # exactly 1 h
    assert "median time to restore above 1 hour" not in _rules(quick)
    slow = [deploy("api", "v2", -10), rollback("api", "v2", "v1", -8)]
    assert "median time to restore above 1 hour" in _rules(slow)


def test_unrestored_rule() -> None:
    assert "failed deployment never restored" in _rules([deploy("api", "v2", -1, status="failed")])
    restored = [deploy("api", "v2", -2, status="failed"), deploy("api", "v3", -1)]
    assert "failed deployment never restored" not in _rules(restored)


def test_repeated_automatic_rollbacks_rule_names_the_service() -> None:
    records = [
        deploy("api", "v2", -10),
        rollback("api", "v2", "v1", -9, trigger="alarm"),
        deploy("api", "v3", -8),
        rollback("api", "v3", "v1", -7, trigger="health"),
        deploy("web", "w2", -6),
        rollback("web", "w2", "w1", -5, trigger="manual"),
        deploy("web", "w3", -4),
        rollback("web", "w3", "w1", -3, trigger="manual"),
    ]
    fired = [
        r
        for r in recommendations(report(records))
        if r.rule == "2 or more automatic rollbacks of one service"
    ]
    assert [r.finding for r in fired] == ["api was rolled back automatically 2 times."]


def test_missing_commit_time_rule_says_how_many() -> None:
    records = [deploy("api", "v1", -3, commit_h=-5), deploy("api", "v2", -2)]
    fired = [
        r
        for r in recommendations(report(records))
        if r.rule == "deployments without a recorded commit time"
    ]
    assert fired and "1 of 2 successful deployments" in fired[0].finding
    assert "covers only 1" in fired[0].finding
    unknown = recommendations(report([deploy("api", "v2", -2)]))
    assert any("lead time is unknown" in r.finding for r in unknown)


def test_no_rule_fires_on_a_healthy_window() -> None:
    records = [deploy("api", f"v{i}", -i - 1, commit_h=-i - 2) for i in range(10)]
    assert recommendations(report(records)) == []
    assert "No rule fired" in summary_markdown(report(records), None)


def test_refused_rollbacks_rule() -> None:
    assert "rollback attempts refused" in _rules([], [attempt("refused", -1)])


def test_markdown_tells_headline_changes_services_rollbacks_and_definitions() -> None:
    # GIVEN 2 deploys now (1 rolled back by an alarm after 2 h), 1 in the previous period
    records = [
        deploy("api", "v1", -31 * 24),
        deploy("api", "v2", -10),
        rollback("api", "v2", "v1", -8, trigger="alarm"),
        deploy("web", "w1", -5),
    ]
    text = summary_markdown(report(records), "deployment-chart-prod-20240601-090000.png")
    assert text.startswith("# Deployment summary — prod\n")
    assert "| Deployments | 2 | 1 | +1 |" in text
    assert "| Change failure rate | 50% | 0% | +50 pts |" in text
    assert "![Deploys per day by outcome, rollbacks marked]" in text
    assert "(deployment-chart-prod-20240601-090000.png)" in text
    assert "| api | 1 | 1 | 0 | 100% | 60 s / 60 s / 60 s | 100% | 1 | 2 h / 2 h |" in text
    assert "| 2024-06-01 01:00 | api | v2 → v1 | alarm | success | 2 h |" in text
    assert "**Rule: median time to restore above 1 hour.**" in text
    assert "- **changeFailureRate**:" in text


def test_markdown_local_time_zone_line() -> None:
    text = summary_markdown(report([]), None, timezone="Europe/Paris")
    assert "(2024-06-01 11:00 Europe/Paris)" in text
    assert "No rollback recorded" in text


def test_markdown_lists_the_latest_rollbacks_only() -> None:
    records = []
    for i in range(25):
        records += [
            deploy("api", f"v{i}", -100 + 2 * i),
            rollback("api", f"v{i}", "v0", -99 + 2 * i),
        ]
    text = summary_markdown(report(records), None)
    assert text.count("| api | v") == render.EVENTS_SHOWN
    assert "| api | v24 → v0 |" in text and "| api | v0 → v0 |" not in text
    assert "…and 5 earlier rollback(s)" in text


def test_chart_bars_stack_outcomes_per_day_and_mark_rollbacks() -> None:
    # GIVEN a day with 2 ok + 1 rolled back + 1 failed deploys and one rollback
    days = pd.date_range("2024-05-30", periods=3, freq="D")
    daily = pd.DataFrame(
        {
            "succeeded": [2, 0, 1],
            "rolledBack": [1, 0, 0],
            "failed": [1, 0, 0],
            "rollbacks": [1, 0, 0],
        },
        index=days,
    )
    fig = chart.deploys_figure(daily, "prod")
    ax = fig.axes[0]
    # THEN three stacks of three bars; the failed bar of day 1 sits on top of 3 others
    heights = [p.get_height() for p in ax.patches]
    bottoms = [p.get_y() for p in ax.patches]
    assert heights == [2, 0, 1, 1, 0, 0, 1, 0, 0]
    assert bottoms[6] == 3
    # AND one rollback marker, above the day's stack, labelled with the count
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 1 and offsets[0][1] > 4
    assert [t.get_text() for t in ax.texts] == ["1"]
    data = chart.png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_of_an_empty_window() -> None:
    r = report([], days=7)
    assert len(r.daily) == 8 and int(np.asarray(r.daily).sum()) == 0
    assert chart.png(chart.deploys_figure(r.daily, "prod"))[:4] == b"\x89PNG"
    assert NOW.hour == 9  # the window starts and ends mid-day: 8 calendar days
