"""Pure decisions: target resolution, each check, the outcome headline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollback import decisions
from rollback.models import AuditRecord, DeploymentRecord, RollbackRequest, Status, Version

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def v(n: int, active: bool = True) -> Version:
    return Version(id=f"api:{n}", order=n, active=active)


def deploy(version: str, status: str = "success", hours_ago: float = 1, kind: str = "deploy"):
    return DeploymentRecord(
        environment="prod",
        service="api",
        version=version,
        status=status,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        started_at=NOW - timedelta(hours=hours_ago),
    )


def attempt(trigger: str, minutes_ago: float, status: Status = Status.SUCCEEDED, aid: str = "x"):
    return AuditRecord(
        audit_id=aid,
        environment="prod",
        service="api",
        status=status,
        requested_at=NOW - timedelta(minutes=minutes_ago),
        trigger=trigger,
    )


def request(trigger: str = "manual", **kw) -> RollbackRequest:
    return RollbackRequest(environment="prod", service="api", trigger=trigger, **kw)


class TestHistoryCandidates:
    def test_newest_successful_deploys_first_without_current_bad_failed_or_rollbacks(self):
        records = [
            deploy("api:1", hours_ago=50),
            deploy("api:2", hours_ago=40),
            deploy("api:3", "failed", hours_ago=30),
            deploy("api:2", kind="rollback", hours_ago=25),
            deploy("api:4", hours_ago=20),
            deploy("api:5", hours_ago=10),
        ]
        got = decisions.history_candidates(records, "api:5", frozenset({"api:4"}))
        assert got == ["api:2", "api:1"]

    def test_repeated_versions_listed_once_and_order_is_by_time_not_input(self):
        records = [
            deploy("api:1", hours_ago=5),
            deploy("api:2", hours_ago=9),
            deploy("api:1", hours_ago=1),
        ]
        assert decisions.history_candidates(records, "api:9", frozenset()) == ["api:1", "api:2"]

    def test_empty_history(self):
        assert decisions.history_candidates([], "api:1", frozenset()) == []


class TestFallback:
    def test_keeps_older_active_not_bad_newest_first(self):
        cands = [v(6), v(5), v(4, active=False), v(3), v(2), v(1)]
        got = decisions.fallback_candidates(cands, v(5), frozenset({"api:3"}))
        assert [x.id for x in got] == ["api:2", "api:1"]

    def test_nothing_older(self):
        assert decisions.fallback_candidates([v(1)], v(1), frozenset()) == []


class TestChecks:
    def test_target_older(self):
        assert decisions.check_target_older(v(5), v(3)).passed
        newer = decisions.check_target_older(v(3), v(5))
        assert not newer.passed and "not older" in newer.detail
        # Issue 9: an order neither the platform nor the history can establish is a
        # failed check (a person may override it with --force-order), no longer a pass.
        unordered = decisions.check_target_older(Version("blue"), Version("green"))
        assert not unordered.passed and "--force-order" in unordered.detail

    def test_not_on_target_and_resume(self):
        assert not decisions.check_not_on_target(v(3), v(3), None).passed
        assert decisions.check_not_on_target(v(3), v(3), "abc").passed
        assert decisions.check_not_on_target(v(4), v(3), None).passed

    def test_not_bad(self):
        assert not decisions.check_not_bad(v(3), frozenset({"api:3"})).passed
        assert decisions.check_not_bad(v(3), frozenset({"api:4"})).passed

    def test_loop_prevention_only_for_automatic_triggers_from_rollbacks(self):
        assert not decisions.check_loop(request("webhook", source_event_id="rollback:1")).passed
        assert decisions.check_loop(request("webhook", source_event_id="delivery-1")).passed
        assert decisions.check_loop(request("manual", source_event_id="rollback:1")).passed

    @pytest.mark.parametrize(
        ("given", "protected", "passed"),
        [
            ("ROLLBACK-PROD", True, True),
            (" ROLLBACK-PROD ", True, True),
            ("rollback-prod", True, False),
            ("", True, False),
            (None, True, False),
            (None, False, True),
        ],
    )
    def test_confirmation(self, given, protected, passed):
        assert decisions.check_confirmation(given, "ROLLBACK-PROD", protected).passed is passed


class TestAutoPolicy:
    def policy(self, req, recent, auto=True, cooldown=900, cap=3):
        return decisions.check_auto_policy(
            req,
            recent,
            auto_rollback=auto,
            cooldown_s=cooldown,
            max_per_hour=cap,
            now=NOW,
            own_audit_id="me",
        )

    def test_manual_requests_are_not_subject_to_it(self):
        assert self.policy(request("manual"), [attempt("alarm", 1)], auto=False).passed

    def test_disabled_environment(self):
        check = self.policy(request("alarm"), [], auto=False)
        assert not check.passed and "disabled" in check.detail

    def test_cooldown(self):
        check = self.policy(request("alarm"), [attempt("webhook", 5)])
        assert not check.passed and "cooldown" in check.detail and "needs a human" in check.detail
        assert self.policy(request("alarm"), [attempt("webhook", 20)]).passed

    def test_refused_attempts_and_own_record_and_manual_ones_do_not_count(self):
        recent = [
            attempt("webhook", 1, Status.REFUSED),
            attempt("alarm", 1, Status.EXECUTING, aid="me"),
            attempt("manual", 1),
        ]
        assert self.policy(request("alarm"), recent).passed

    def test_hourly_cap(self):
        recent = [attempt("alarm", m) for m in (20, 35, 50)]
        check = self.policy(request("health"), recent, cooldown=60, cap=3)
        assert not check.passed and "cap 3" in check.detail
        assert self.policy(request("health"), recent[:2], cooldown=60, cap=3).passed


def test_find_interrupted_only_in_flight_and_not_self():
    recent = [
        attempt("manual", 1, Status.EXECUTING, aid="a"),
        attempt("manual", 2, Status.STABILIZING, aid="b"),
        attempt("manual", 3, Status.REQUESTED, aid="c"),
        attempt("manual", 4, Status.SUCCEEDED, aid="d"),
        attempt("manual", 0, Status.EXECUTING, aid="me"),
    ]
    assert [r.audit_id for r in decisions.find_interrupted(recent, "me")] == ["a", "b"]


@pytest.mark.parametrize(
    ("status", "deploy_failed", "expected"),
    [
        ("succeeded", True, "Deploy of api:4 failed, rollback succeeded"),
        ("succeeded", False, "Rollback succeeded"),
        ("failed", True, "Deploy of api:4 failed and the rollback FAILED"),
        ("refused", False, "Rollback refused, nothing changed"),
        ("planned", False, "DRY RUN: rollback planned, nothing changed"),
    ],
)
def test_headline_is_honest(status, deploy_failed, expected):
    line = decisions.headline(status, "prod", "api", "api:4", "api:3", deploy_failed)
    assert line.startswith(expected)
    if deploy_failed:
        assert "succeeded" not in line.split(",")[0]
