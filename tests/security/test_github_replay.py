"""GitHub: a replayed deployment_status is one incident (dedup on the signed payload's
``deployment_status.id``, not on the unsigned delivery header); a failing run from a
fork, or a run triggered by an event not in ``webhooks.github.events``, is ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollback.config import Config
from tests.functional.receiver_rig import (
    Receiver,
    audit_count,
    edit_config,
    running,
    write_config,
)
from tests.unit.webhooks.helpers import failed_run, fixture


def test_replayed_deployment_status_is_one_rollback(tmp_path: Path, world: Config) -> None:
    # GIVEN a rule for the GitHub deployment environment, and a failed deployment status
    def rule(data: dict[str, Any]) -> None:
        data["webhooks"]["github"]["rules"] = [
            {
                "repository": "Codertocat/Hello-World",
                "github_environment": "production",
                "environment": "staging",
                "service": "api",
            }
        ]

    config = edit_config(write_config(tmp_path / "deploy.yaml"), rule)
    rx = Receiver(config)
    try:
        status = fixture("deployment_status.payload")
        status["deployment_status"]["state"] = "failure"
        # WHEN the same signed payload arrives three times under new delivery ids,
        # during the rollback and after it
        first = rx.github(status, event="deployment_status", delivery="d-original")
        replays = [rx.github(status, event="deployment_status", delivery="d-replay-1")]
        rx.wait()
        replays.append(rx.github(status, event="deployment_status", delivery="d-replay-2"))
        # THEN one rollback: every replay is a duplicate of the first
        assert first.status_code == 202, first.text
        for resp in replays:
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "duplicate"
            assert resp.json()["audit_id"] == first.json()["audit_id"]
        rx.wait()
        assert running() == "api:3"  # api:4 -> api:3 once, not on to api:2
        assert audit_count(config) == 1
    finally:
        rx.stop()


def test_failing_run_from_a_fork_is_ignored(receiver: Receiver) -> None:
    # GIVEN a failing run of the mapped workflow whose code came from a fork
    payload = failed_run()
    payload["workflow_run"]["event"] = "pull_request"
    payload["workflow_run"]["head_repository"]["full_name"] = "mallory/octo-repo"
    payload["workflow_run"]["head_branch"] = "main"
    for event in ("pull_request", "push"):  # whatever the run claims as its event
        payload["workflow_run"]["event"] = event
        # WHEN it is delivered, correctly signed
        resp = receiver.github(payload)
        # THEN ignored, saying why; nothing recorded or rolled back
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "ignored"
        assert "another repository" in resp.json()["reason"]
    assert audit_count(receiver.config) == 0 and running() == "api:4"


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target", "repository_dispatch"])
def test_runs_of_other_events_are_ignored(receiver: Receiver, event: str) -> None:
    # GIVEN a failing run of our repository triggered by an event not in the list
    resp = receiver.github(failed_run(event=event))
    # THEN ignored, naming the events acted on
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ignored"
    assert f"triggered by {event!r}" in resp.json()["reason"]
    assert "push, workflow_dispatch, schedule, release, deployment" in resp.json()["reason"]
    assert audit_count(receiver.config) == 0


def test_events_list_is_configurable(world: Config, tmp_path: Path) -> None:
    # GIVEN webhooks.github.events = [workflow_dispatch]
    def only_dispatch(data: dict[str, Any]) -> None:
        data["webhooks"]["github"]["events"] = ["workflow_dispatch"]

    config = edit_config(write_config(tmp_path / "events.yaml"), only_dispatch)
    rx = Receiver(config)
    try:
        # WHEN a push run fails  THEN ignored; a dispatched run  THEN accepted
        assert rx.github(failed_run(event="push")).json()["status"] == "ignored"
        resp = rx.github(failed_run(event="workflow_dispatch"))
        assert resp.status_code == 202, resp.text
    finally:
        rx.stop()
