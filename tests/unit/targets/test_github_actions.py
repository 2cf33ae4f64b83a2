"""Pure decisions of the GitHub Actions target: inputs, which run is ours, run states,
error translation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from github import GithubException
from pydantic import ValidationError
from requests import exceptions as req

from rollback.errors import NotFoundError, TargetError, TransientError
from rollback.targets.base import RunContext
from rollback.targets.github_actions import (
    GithubActionsConfig,
    RunInfo,
    dispatch_inputs,
    pick_run,
    run_state,
    translate,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _run(run_id: int, seconds: int, title: str = "", event: str = "workflow_dispatch") -> RunInfo:
    return RunInfo(
        id=run_id,
        status="queued",
        conclusion=None,
        html_url=f"https://github.com/o/r/actions/runs/{run_id}",
        event=event,
        created_at=T0 + timedelta(seconds=seconds),
        title=title,
    )


def test_inputs_carry_who_what_why_and_win_over_static_ones() -> None:
    ctx = RunContext(audit_id="a1", environment="prod", reason="errors", service="shop")
    inputs = dispatch_inputs({"cluster": "eu-1", "version": "static"}, ctx, "v1.4.0")
    assert inputs == {
        "cluster": "eu-1",
        "version": "v1.4.0",
        "environment": "prod",
        "reason": "errors",
        "audit_id": "a1",
    }


def test_pick_run_takes_the_earliest_new_dispatch_run() -> None:
    # GIVEN a run listed before the dispatch, a push run and two new dispatch runs
    runs = [_run(5, 20), _run(4, 10), _run(3, 15, event="push"), _run(1, 30)]
    # WHEN
    chosen = pick_run(runs, since=T0, before=frozenset({1}), audit_id="")
    # THEN
    assert chosen is not None and chosen.id == 4


def test_pick_run_prefers_the_run_titled_with_the_audit_id() -> None:
    runs = [_run(4, 10, title="rollback other"), _run(5, 20, title="rollback a1")]
    assert pick_run(runs, T0, frozenset(), "a1").id == 5  # type: ignore[union-attr]


def test_pick_run_ignores_runs_before_the_dispatch() -> None:
    assert pick_run([_run(4, -5)], since=T0, before=frozenset(), audit_id="a1") is None


@pytest.mark.parametrize(
    ("status", "conclusion", "state"),
    [
        ("queued", None, "waiting"),
        ("in_progress", None, "waiting"),
        ("completed", "success", "done"),
        ("completed", "failure", "failed"),
        ("completed", "cancelled", "failed"),
        ("completed", "timed_out", "failed"),
    ],
)
def test_run_state(status: str, conclusion: str | None, state: str) -> None:
    run = RunInfo(1, status, conclusion, "https://x/runs/1", "workflow_dispatch", T0)
    got, line = run_state(run)
    assert got == state
    assert "https://x/runs/1" in line


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (GithubException(503, {"message": "unavailable"}), TransientError),
        (GithubException(403, {"message": "API rate limit exceeded"}), TransientError),
        (GithubException(404, {"message": "Not Found"}), NotFoundError),
        (GithubException(422, {"message": "No commit found"}), NotFoundError),
        (GithubException(401, {"message": "Bad credentials"}), TargetError),
        (req.ConnectionError("refused"), TransientError),
    ],
)
def test_translate(exc: Exception, kind: type) -> None:
    err = translate(exc, "dispatch workflow")
    assert type(err) is kind
    assert err.args[0].startswith("dispatch workflow")


def test_refused_token_says_what_to_check() -> None:
    err = translate(GithubException(401, {"message": "Bad credentials"}), "get workflow")
    assert "check the token's access" in str(err)


def test_config_validates_repository() -> None:
    base = {"type": "github_actions", "workflow": "rollback.yml"}
    assert GithubActionsConfig(**base, repository="acme/shop").token_env == "GITHUB_TOKEN"
    with pytest.raises(ValidationError):
        GithubActionsConfig(**base, repository="not a repo")
