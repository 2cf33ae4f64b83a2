"""The migration gate: schema ranges and snapshot age, as pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollback.decisions import check_schema, check_snapshot
from rollback.models import DeploymentRecord

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def rec(version, hours_ago, schema=None, low=None, high=None, status="success"):
    return DeploymentRecord(
        environment="prod",
        service="api",
        version=version,
        status=status,
        started_at=NOW - timedelta(hours=hours_ago),
        schema_version=schema,
        min_schema_version=low,
        max_schema_version=high,
    )


HISTORY = [
    rec("v1", 50, schema=1, low=1, high=1),
    rec("v2", 40, schema=2, low=1, high=2),
    rec("v3", 30, schema=3, low=2, high=3),
    rec("v4", 20, schema=4, low=3, high=4, status="failed"),
]


def test_target_that_cannot_run_on_the_current_schema_is_refused_with_the_safe_one():
    check = check_schema(HISTORY, "v2", "v4", frozenset())
    assert not check.passed
    assert "database is at 4" in check.detail and "1..2" in check.detail
    assert "no earlier version runs on it" in check.detail
    # With v3 allowing schema 4, v3 becomes the newest safe target.
    history = [*HISTORY[:2], rec("v3", 30, schema=3, low=2, high=4), HISTORY[3]]
    check = check_schema(history, "v2", "v4", frozenset())
    assert not check.passed and "newest safe target: v3" in check.detail


def test_compatible_target_passes():
    history = [*HISTORY[:3], rec("v4", 20, schema=3, low=3, high=3)]
    check = check_schema(history, "v3", "v4", frozenset())
    assert check.passed and "2..3" in check.detail


def test_bad_versions_are_never_offered_as_safe():
    history = [*HISTORY[:2], rec("v3", 30, schema=3, low=2, high=4), HISTORY[3]]
    check = check_schema(history, "v2", "v4", frozenset({"v3"}))
    assert "no earlier version runs on it" in check.detail


def test_unknown_schema_data_passes_and_says_so():
    plain = [rec("v1", 5), rec("v2", 1)]
    check = check_schema(plain, "v1", "v2", frozenset())
    assert check.passed and check.detail == "no schema data recorded"


def test_open_ranges():
    history = [rec("v1", 5, low=None, high=None), rec("v2", 1, schema=9)]
    assert check_schema(history, "v1", "v2", frozenset()).passed
    history = [rec("v1", 5, low=10), rec("v2", 1, schema=9)]
    assert not check_schema(history, "v1", "v2", frozenset()).passed


def test_snapshot_age():
    assert not check_snapshot("db-", None, 24, NOW).passed
    assert check_snapshot("db-", NOW - timedelta(hours=2), 24, NOW).passed
    stale = check_snapshot("db-", NOW - timedelta(hours=30), 24, NOW)
    assert not stale.passed and "30.0h old" in stale.detail
