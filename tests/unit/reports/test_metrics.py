"""Every number of the report, on small datasets computed by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reports.metrics import DEFINITIONS
from tests.unit.reports.builders import NOW, at, attempt, deploy, report, rollback

DAY = 24


def test_stats_count_rate_and_average_duration() -> None:
    # GIVEN four deploys (one failed) of 60/120/180/240 s and a rollback (not a deployment)
    records = [
        deploy("api", "v1", -50, took_s=60),
        deploy("api", "v2", -40, took_s=120),
        deploy("web", "w1", -30, took_s=180, status="failed"),
        deploy("web", "w2", -20, took_s=240),
        rollback("api", "v2", "v1", -10),
    ]
    # WHEN the report is computed
    stats = report(records).document["stats"]
    # THEN the counts and rates follow the definitions
    assert stats == {
        "totalDeployments": 4,
        "successfulDeployments": 3,
        "failedDeployments": 1,
        "successRate": 75.0,
        "averageDuration": 150.0,
    }


def test_success_rate_rounds_to_two_decimals_and_duration_to_one() -> None:
    # GIVEN 3 deploys, 2 successful, durations 10, 10, 11 s
    records = [
        deploy("api", "v1", -3, took_s=10),
        deploy("api", "v2", -2, took_s=10),
        deploy("api", "v3", -1, took_s=11, status="failed"),
    ]
    stats = report(records).document["stats"]
    # THEN 2/3 = 66.67 % and 31/3 = 10.333.. -> 10.3 s
    assert stats["successRate"] == 66.67
    assert stats["averageDuration"] == 10.3


def test_empty_window_gives_nulls_not_zeros() -> None:
    # GIVEN only a deploy older than the window and one of another environment
    records = [deploy("api", "v1", -31 * DAY), deploy("api", "v2", -1, env="staging")]
    doc = report(records).document
    # THEN no division error: rates are null, counts zero
    assert doc["stats"] == {
        "totalDeployments": 0,
        "successfulDeployments": 0,
        "failedDeployments": 0,
        "successRate": None,
        "averageDuration": None,
    }
    assert doc["dora"]["changeFailureRatePercent"] is None
    assert doc["dora"]["deploymentFrequencyPerDay"] == 0.0
    assert doc["dora"]["leadTimeHoursMedian"] is None
    assert doc["dora"]["timeToRestoreHoursMedian"] is None
    assert doc["services"] == {}
    assert doc["rollbacks"]["count"] == 0


def test_window_boundaries_include_start_and_exclude_now() -> None:
    # GIVEN deploys exactly at now - 30 days, just before it, and exactly at now
    records = [
        deploy("api", "on-start", -30 * DAY),
        deploy("api", "before-start", -30 * DAY - 1 / 3600),
        deploy("api", "at-now", 0),
        deploy("api", "just-before-now", -1 / 3600),
    ]
    doc = report(records).document
    # THEN the window [now - 30 d, now) holds exactly two of them
    assert doc["stats"]["totalDeployments"] == 2
    assert doc["window"] == {
        "from": "2024-05-02T09:00:00Z",
        "to": "2024-06-01T09:00:00Z",
        "days": 30,
    }
    # AND the one just before the start belongs to the previous period
    assert doc["previousPeriod"]["stats"]["totalDeployments"] == 1


def test_all_failed() -> None:
    # GIVEN three failed deploys of one service and nothing after them
    records = [deploy("api", f"v{i}", -10 + i, status="failed") for i in range(3)]
    doc = report(records).document
    # THEN success rate 0, change failure rate 100, nothing restored
    assert doc["stats"]["successRate"] == 0.0
    assert doc["dora"]["changeFailureRatePercent"] == 100.0
    assert doc["dora"]["changeFailures"] == 3
    assert doc["dora"]["restoredCount"] == 0
    assert doc["dora"]["unrestoredCount"] == 3
    assert doc["dora"]["timeToRestoreHoursMedian"] is None
    assert doc["dora"]["deploymentFrequencyPerDay"] == 0.0


def test_deployment_frequency_is_successful_deploys_per_day() -> None:
    # GIVEN 7 successful and 2 failed deploys in a 7-day window
    records = [deploy("api", f"v{i}", -1 - i) for i in range(7)]
    records += [deploy("api", f"f{i}", -0.5 - i, status="failed") for i in range(2)]
    doc = report(records, days=7).document
    assert doc["dora"]["deploymentFrequencyPerDay"] == 1.0
    # AND with 30 days it is 7/30 = 0.2333.. -> 0.233
    assert report(records, days=30).document["dora"]["deploymentFrequencyPerDay"] == 0.233


def test_lead_time_median_and_p90_over_successful_deploys_with_commit_time() -> None:
    # GIVEN successful deploys with lead times 1, 2, 3, 4, 10 h, a failed one with 100 h
    # and a successful one without commit time
    leads = [1, 2, 3, 4, 10]
    records = [
        deploy("api", f"v{i}", -i - 1, commit_h=-i - 1 - lead) for i, lead in enumerate(leads)
    ]
    records.append(deploy("api", "bad", -20, status="failed", commit_h=-120))
    records.append(deploy("web", "w1", -21))
    dora = report(records).document["dora"]
    # THEN median 3 h, p90 interpolates: rank 3.6 -> 4 + 0.6 * (10 - 4) = 7.6 h
    assert dora["leadTimeHoursMedian"] == 3.0
    assert dora["leadTimeHoursP90"] == 7.6
    assert dora["leadTimeSampleSize"] == 5
    assert dora["deploymentsWithoutCommitTime"] == 1


def test_lead_time_is_null_when_no_deploy_carries_a_commit_time() -> None:
    dora = report([deploy("api", "v1", -2), deploy("api", "v2", -1)]).document["dora"]
    assert dora["leadTimeHoursMedian"] is None
    assert dora["leadTimeHoursP90"] is None
    assert dora["leadTimeSampleSize"] == 0
    assert dora["deploymentsWithoutCommitTime"] == 2


def test_a_rolled_back_success_counts_as_a_change_failure_and_is_restored_by_the_rollback() -> None:
    # GIVEN v1 ok, v2 ok then rolled back (from v2) 90 minutes later, v3 ok
    records = [
        deploy("api", "v1", -10),
        deploy("api", "v2", -8),
        rollback("api", "v2", "v1", -6.5, trigger="alarm"),
        deploy("api", "v3", -2),
    ]
    dora = report(records).document["dora"]
    # THEN 1 of 3 deployments failed: 33.33 %; restored in 1.5 h by the alarm rollback
    assert dora["changeFailures"] == 1
    assert dora["rolledBackDeployments"] == 1
    assert dora["changeFailureRatePercent"] == 33.33
    assert dora["timeToRestoreHoursMedian"] == 1.5
    assert dora["restoredCount"] == 1
    assert dora["unrestoredCount"] == 0


def test_a_rollback_after_the_next_deploy_does_not_blame_the_earlier_one() -> None:
    # GIVEN two deploys with no rollback between them, then a rollback naming v1
    records = [
        deploy("api", "v1", -10),
        deploy("api", "v2", -8),
        rollback("api", "v1", "v0", -6),
    ]
    dora = report(records).document["dora"]
    # THEN neither deploy was rolled back: v1 was replaced by v2 before the rollback,
    # and the rollback does not name v2
    assert dora["changeFailures"] == 0
    assert dora["rolledBackDeployments"] == 0
    assert dora["changeFailureRatePercent"] == 0.0


def test_a_rollback_of_another_service_does_not_count() -> None:
    records = [deploy("api", "v2", -8), rollback("web", "v2", "v1", -6)]
    assert report(records).document["dora"]["changeFailures"] == 0


def test_a_failed_and_rolled_back_deploy_counts_once() -> None:
    # GIVEN a failed deploy of v2 that is then rolled back from v2
    records = [
        deploy("api", "v1", -10),
        deploy("api", "v2", -8, status="failed"),
        rollback("api", "v2", "v1", -7),
    ]
    dora = report(records).document["dora"]
    assert dora["changeFailures"] == 1
    assert dora["changeFailureRatePercent"] == 50.0
    assert dora["timeToRestoreHoursMedian"] == 1.0


def test_failed_deploy_restored_by_the_next_successful_deploy_skips_failed_records() -> None:
    # GIVEN v2 fails at -10 h, a failed rollback at -9 h, v3 also fails at -8 h,
    # v4 succeeds at -6 h
    records = [
        deploy("api", "v2", -10, status="failed"),
        rollback("api", "v2", "v1", -9, status="failed"),
        deploy("api", "v3", -8, status="failed"),
        deploy("api", "v4", -6),
    ]
    dora = report(records).document["dora"]
    # THEN both failures are restored by v4: after 4 h and 2 h
    assert dora["restoredCount"] == 2
    assert dora["timeToRestoreHoursMedian"] == 3.0
    assert dora["timeToRestoreHoursP90"] == 3.8
    # AND the failed rollback names v2, the deployment just before it: rolled back too
    assert dora["rolledBackDeployments"] == 1
    assert dora["changeFailures"] == 2


def test_unrestored_failures_are_counted_not_dropped() -> None:
    # GIVEN one failure restored after 2 h and one never restored (its restore is
    # after now, so not known yet)
    records = [
        deploy("api", "v1", -20, status="failed"),
        deploy("api", "v2", -18),
        deploy("web", "w1", -5, status="failed"),
        deploy("web", "w2", 1),
    ]
    dora = report(records).document["dora"]
    assert dora["restoredCount"] == 1
    assert dora["unrestoredCount"] == 1
    assert dora["timeToRestoreHoursMedian"] == 2.0


def test_restore_can_happen_after_the_window_ends_if_before_now() -> None:
    # GIVEN a failure in the previous period restored in the current one
    records = [deploy("api", "v1", -31 * DAY, status="failed"), deploy("api", "v2", -29 * DAY)]
    prev = report(records).document["previousPeriod"]["dora"]
    assert prev["restoredCount"] == 1
    assert prev["timeToRestoreHoursMedian"] == 48.0


def test_a_rollback_at_the_same_instant_as_its_deploy_follows_it() -> None:
    # GIVEN a deploy and a rollback of it recorded with the same finished_at
    records = [rollback("api", "v2", "v1", -5), deploy("api", "v2", -5)]
    dora = report(records).document["dora"]
    # THEN deploys order before rollbacks: the deploy was rolled back, restored at once
    assert dora["rolledBackDeployments"] == 1
    assert dora["timeToRestoreHoursMedian"] == 0.0


def test_records_without_finished_at_are_not_counted() -> None:
    unfinished = deploy("api", "v9", -1)
    records = [
        deploy("api", "v1", -2),
        type(unfinished)(**{**unfinished.__dict__, "finished_at": None}),
    ]
    assert report(records).document["stats"]["totalDeployments"] == 1


def test_recent_trends_cover_the_last_7_and_30_days() -> None:
    records = [deploy("api", "a", -1), deploy("api", "b", -8 * DAY, status="failed")]
    trends = report(records, days=90).document["recentTrends"]
    assert trends["last7Days"]["totalDeployments"] == 1
    assert trends["last7Days"]["successRate"] == 100.0
    assert trends["last30Days"]["totalDeployments"] == 2
    assert trends["last30Days"]["successRate"] == 50.0


def test_previous_period_has_the_same_length() -> None:
    records = [
        deploy("api", "now1", -1),
        deploy("api", "prev1", -8 * DAY),
        deploy("api", "prev2", -13 * DAY, status="failed"),
        deploy("api", "old", -15 * DAY),
    ]
    doc = report(records, days=7).document
    assert doc["previousPeriod"]["window"]["days"] == 7
    assert doc["previousPeriod"]["stats"]["totalDeployments"] == 2
    assert doc["previousPeriod"]["dora"]["changeFailures"] == 1


def test_per_service_stats_and_table_rows() -> None:
    records = [
        deploy("api", "v1", -10, took_s=100),
        deploy("api", "v2", -9, took_s=200, status="failed"),
        deploy("web", "w1", -8, took_s=50),
        rollback("web", "w1", "w0", -7, trigger="health"),
        rollback("web", "w0", "w-1", -6.5, trigger="alarm"),
    ]
    r = report(records)
    assert r.document["services"]["api"] == {
        "totalDeployments": 2,
        "successfulDeployments": 1,
        "failedDeployments": 1,
        "successRate": 50.0,
        "averageDuration": 150.0,
    }
    web = r.document["serviceDora"]["web"]
    assert web["rollbacks"] == 2
    assert web["automaticRollbacks"] == 2
    assert web["changeFailureRatePercent"] == 100.0
    assert [row["service"] for row in r.services] == ["api", "web"]
    assert r.services[1]["timeToRestoreHoursMedian"] == 1.0


def test_rollback_attempts_from_the_audit_log() -> None:
    # GIVEN attempts: 2 succeeded (manual 60 s, alarm 180 s), 1 failed (webhook 600 s),
    # 1 refused (health), a dry run, one of staging, one before the window
    attempts = [
        attempt("succeeded", -5, took_s=60, trigger="manual"),
        attempt("succeeded", -4, took_s=180, trigger="alarm"),
        attempt("failed", -3, took_s=600, trigger="webhook"),
        attempt("refused", -2, took_s=1, trigger="health"),
        attempt("planned", -2, took_s=1, dry_run=True),
        attempt("succeeded", -2, env="staging"),
        attempt("succeeded", -40 * DAY),
    ]
    rb = report([], attempts).document["rollbacks"]
    assert rb["count"] == 4
    assert (rb["succeeded"], rb["failed"], rb["refused"], rb["interrupted"]) == (2, 1, 1, 0)
    assert rb["byTrigger"]["manual"] == {"count": 1, "succeeded": 1, "failed": 0, "refused": 0}
    assert rb["byTrigger"]["health"] == {"count": 1, "succeeded": 0, "failed": 0, "refused": 1}
    assert rb["byTrigger"]["webhook"]["failed"] == 1
    # THEN durations exclude the refusal: 60, 180, 600 -> median 180, p90 516
    assert rb["durationSecondsMedian"] == 180.0
    assert rb["durationSecondsP90"] == 516.0


def test_an_attempt_still_in_flight_is_not_counted() -> None:
    flying = attempt("executing", -1)
    flying["finished_at"] = None
    assert report([], [flying]).document["rollbacks"]["count"] == 0


def test_time_to_restore_by_trigger() -> None:
    records = [
        deploy("api", "v2", -20),
        rollback("api", "v2", "v1", -19, trigger="alarm"),  # 1 h
        deploy("api", "v3", -15),
        rollback("api", "v3", "v1", -12, trigger="alarm"),  # 3 h
        deploy("web", "w2", -10, status="failed"),
        deploy("web", "w3", -6),  # fix-forward after 4 h
    ]
    by = report(records).document["rollbacks"]["timeToRestoreHoursMedianByTrigger"]
    assert by["alarm"] == 2.0
    assert by["deploy"] == 4.0
    assert by["manual"] is None
    assert report(records).document["rollbacks"]["recordedInHistory"] == {
        "count": 2,
        "succeeded": 2,
        "failed": 0,
    }


def test_daily_counts_and_rollback_events() -> None:
    records = [
        deploy("api", "v1", -30),
        deploy("api", "v2", -29),
        rollback("api", "v2", "v1", -28, trigger="alarm"),
        deploy("api", "v3", -3, status="failed"),
    ]
    r = report(records, days=3)
    # THEN one row per UTC day the window touches (09:00 three days ago to 09:00 today)
    assert len(r.daily) == 4
    day = at(-30).date()
    assert r.daily.loc[str(day)].to_dict() == {
        "succeeded": 1,
        "rolledBack": 1,
        "failed": 0,
        "rollbacks": 1,
    }
    assert int(r.daily["failed"].sum()) == 1
    assert r.events.loc[0, "from_version"] == "v2"
    assert r.events.loc[0, "restore_h"] == pytest.approx(1.0)


def test_definitions_are_in_the_document() -> None:
    doc = report([]).document
    assert doc["definitions"] is DEFINITIONS
    for key in ("changeFailureRate", "timeToRestore", "leadTime", "deploymentFrequency"):
        assert key in doc["definitions"]
    assert doc["generatedAt"] == "2024-06-01T09:00:00Z"


def test_now_in_another_zone_is_the_same_instant() -> None:
    records = [deploy("api", "v1", -1)]
    shifted = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert report(records, now=shifted).document == report(records).document
    assert shifted - NOW == timedelta(0)
