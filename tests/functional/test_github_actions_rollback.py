"""GitHub Actions rollbacks against a fake GitHub REST server over HTTP (PyGithub)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.rollback_flow import rollback_flow
from rollback.errors import ConfigError, NotFoundError
from rollback.models import DeploymentRecord, RollbackRequest, utcnow
from rollback.targets.base import RunContext
from rollback.targets.github_actions import GithubActionsConfig, GithubActionsTarget
from tests.fakes.flow_config import write_config
from tests.fakes.github_server import FakeGitHub

TOKEN = "ghp_test_token_never_logged_0123456789"
SHA_V1 = "1" * 40
SHA_V2 = "2" * 40
REFS = {"v1.4.0": SHA_V1, "v1.5.0": SHA_V2, "main": "f" * 40}
CONTEXT = RunContext(
    audit_id="audit-123",
    environment="prod",
    service="shop",
    reason="checkout errors",
    requested_by="alice",
)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_GH_TOKEN", TOKEN)
    return TOKEN


def _fake(**kwargs: Any) -> FakeGitHub:
    kwargs.setdefault("refs", REFS)
    kwargs.setdefault("deployments", [{"environment": "prod", "ref": "v1.5.0", "sha": SHA_V2}])
    return FakeGitHub(**kwargs)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with _fake() as fake:
        yield fake


def _settings(fake: FakeGitHub, **extra: Any) -> dict[str, Any]:
    return {
        "type": "github_actions",
        "repository": "acme/shop",
        "workflow": "rollback.yml",
        "ref": "main",
        "inputs": {"cluster": "eu-1"},
        "token_env": "TEST_GH_TOKEN",
        "base_url": fake.base_url,
        "commit_status": True,
        "poll_interval_s": 0.05,
        **extra,
    }


def _target(fake: FakeGitHub, **extra: Any) -> GithubActionsTarget:
    target = GithubActionsTarget(GithubActionsConfig(**_settings(fake, **extra)))
    target.context = CONTEXT
    return target


def test_dispatch_waits_for_run_and_reports_commit_status(
    github: FakeGitHub, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an older dispatch run already in the list, and prod on v1.5.0
    github.add_run("workflow_dispatch", datetime.now(UTC) - timedelta(seconds=30))
    target = _target(github)
    caplog.set_level(logging.DEBUG)
    # WHEN the target resolves v1.4.0, checks, dispatches, waits and verifies
    current = target.current()
    version = target.lookup("v1.4.0")
    checks = target.check(current, version)
    target.execute(version)
    lines: list[str] = []
    settled = target.stabilize(version, timeout_s=10, progress=lines.append)
    verified = {c.name: c for c in target.verify(version)}
    # THEN one dispatch with our inputs, on the configured ref
    assert (current.id, version.id) == ("v1.5.0", "v1.4.0")
    assert dict(version.detail)["sha"] == SHA_V1
    assert version.order is None and target.candidates() == []
    assert all(c.passed for c in checks), checks
    assert github.dispatches == [
        {
            "ref": "main",
            "inputs": {
                "cluster": "eu-1",
                "environment": "prod",
                "version": "v1.4.0",
                "reason": "checkout errors",
                "audit_id": "audit-123",
            },
        }
    ]
    # AND the new run (not the older one) was followed to success
    (new_run,) = [r for r in github.runs.values() if r["display_title"] == "rollback audit-123"]
    assert settled.stable, settled
    assert str(new_run["id"]) in settled.detail
    assert any("waiting for the run" in line for line in lines)
    assert verified["workflow_run"].passed
    assert new_run["html_url"] in verified["workflow_run"].detail
    # AND a success status landed on the commit rolled back to
    assert [(sha, body["state"], body["context"]) for sha, body in github.statuses] == [
        (SHA_V1, "success", "rollback")
    ]
    assert github.statuses[0][1]["target_url"] == new_run["html_url"]
    # AND the token went only into the Authorization header, never into the logs
    assert all(h.endswith(TOKEN) for h in github.auth_headers)
    assert TOKEN not in caplog.text


def test_failed_run_is_a_failed_rollback_with_failure_status(token: str) -> None:
    with _fake(conclusion="failure") as fake:
        target = _target(fake)
        version = target.lookup("v1.4.0")
        target.execute(version)
        settled = target.stabilize(version, timeout_s=10, progress=lambda _: None)
        assert not settled.stable
        assert "conclusion failure" in settled.detail
        assert [(sha, body["state"]) for sha, body in fake.statuses] == [(SHA_V1, "failure")]


def test_run_that_never_completes_times_out(token: str) -> None:
    with _fake(conclusion=None) as fake:
        target = _target(fake, run_timeout_s=0.4)
        version = target.lookup("v1.4.0")
        target.execute(version)
        settled = target.stabilize(version, timeout_s=10, progress=lambda _: None)
        assert not settled.stable
        assert settled.detail.startswith("not completed after 0s: run")
        assert "in_progress" in settled.detail
        assert fake.statuses[0][1]["state"] == "failure"


def test_unknown_ref_missing_workflow_and_missing_token(
    github: FakeGitHub, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _target(github)
    with pytest.raises(NotFoundError, match="'v9.9.9' is not a branch, tag or commit"):
        target.lookup("v9.9.9")
    other = _target(github, workflow="nope.yml")
    checks = other.check(other.current(), other.lookup("v1.4.0"))
    assert [(c.name, c.passed) for c in checks] == [("workflow_active", False)]
    monkeypatch.delenv("TEST_GH_TOKEN")
    with pytest.raises(ConfigError, match="set environment variable TEST_GH_TOKEN") as err:
        _target(github).current()
    assert TOKEN not in str(err.value)


def _history(env: str, service: str) -> list[DeploymentRecord]:
    now = utcnow()
    return [
        DeploymentRecord(env, service, "v1.4.0", "success", started_at=now - timedelta(days=2)),
        DeploymentRecord(env, service, "v1.5.0", "success", started_at=now - timedelta(hours=1)),
    ]


def _run_flow(fake: FakeGitHub, tmp_path: Path, history: bool) -> dict[str, Any]:
    from rollback.config import load_config
    from rollback.runtime import Runtime

    path = write_config(tmp_path / "rollback.yaml", "shop", _settings(fake), environment="prod")
    if history:
        rt = Runtime(load_config(path))
        rt.ensure_tables()
        rt.history.import_many(_history("prod", "shop"))
    return rollback_flow(
        request=RollbackRequest(environment="prod", service="shop", reason="checkout errors"),
        config_path=str(path),
    )


def test_flow_dispatches_rollback_to_last_good_ref(
    aws: str, prefect_server: None, token: str, github: FakeGitHub, tmp_path: Path
) -> None:
    # GIVEN history v1.4.0 then v1.5.0 (running now, per the GitHub deployment)
    out = _run_flow(github, tmp_path, history=True)
    # THEN the workflow ran for v1.4.0 and the rollback succeeded
    assert out["status"] == "succeeded", out
    assert (out["from_version"], out["to_version"]) == ("v1.5.0", "v1.4.0")
    (dispatch,) = github.dispatches
    assert dispatch["inputs"]["version"] == "v1.4.0"
    assert dispatch["inputs"]["audit_id"] == out["audit_id"]
    detail = {c["name"]: c["detail"] for c in out["checks"]}
    assert "/actions/runs/" in detail["workflow_run"]
    assert github.statuses[0][0] == SHA_V1


def test_flow_refuses_without_history(
    aws: str, prefect_server: None, token: str, github: FakeGitHub, tmp_path: Path
) -> None:
    # GIVEN no deployment history: git refs have no order to fall back on
    out = _run_flow(github, tmp_path, history=False)
    # THEN refused, nothing dispatched
    assert out["status"] == "refused", out
    assert "no earlier good version of shop" in out["reason"]
    assert github.dispatches == []
    assert github.statuses == []


def test_unknown_repository_is_not_found(github: FakeGitHub, token: str) -> None:
    target = _target(github, repository="acme/other")
    with pytest.raises(NotFoundError, match=r"get repository \(acme/other\)"):
        target.lookup("v1.4.0")
