"""Pure decisions of the CodeDeploy target: versions, revisions, poll states, checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollback import decisions
from rollback.targets.codedeploy import (
    after_stop,
    deployment_state,
    newest_first,
    revision_key,
    revision_of,
    stop_restores,
    version_of,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _info(did: str, minutes: int, status: str = "Succeeded", key: str = "app.zip") -> dict:
    return {
        "deploymentId": did,
        "status": status,
        "createTime": T0 + timedelta(minutes=minutes),
        "revision": {
            "revisionType": "S3",
            "s3Location": {"bucket": "b", "key": key, "bundleType": "zip"},
        },
        "description": f"release {did}",
    }


@pytest.mark.parametrize(
    ("revision", "key"),
    [
        (
            {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "a.zip"}},
            "s3://b/a.zip",
        ),
        (
            {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "a.zip", "version": "7"}},
            "s3://b/a.zip?versionId=7",
        ),
        (
            {
                "revisionType": "GitHub",
                "gitHubLocation": {"repository": "o/r", "commitId": "abc123"},
            },
            "github:o/r@abc123",
        ),
        (
            {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": "ff"}},
            "appspeccontent:ff",
        ),
        ({}, "unknown revision"),
    ],
)
def test_revision_key(revision: dict, key: str) -> None:
    assert revision_key(revision) == key


def test_version_orders_by_creation_time_and_keeps_the_revision() -> None:
    # GIVEN two deployments a minute apart
    older, newer = version_of(_info("d-1", 0, key="v1.zip")), version_of(_info("d-2", 1))
    # THEN the later one is newer, and the revision survives the round trip
    assert decisions.is_older(older, newer) is True
    assert older.label == "d-1 (s3://b/v1.zip)"
    assert revision_of(older)["s3Location"]["key"] == "v1.zip"
    assert older.active and not version_of(_info("d-3", 2, status="Failed")).active


def test_newest_first_and_default_target_is_last_success_before_current() -> None:
    # GIVEN d-1, d-2 succeeded, d-3 (current) failed
    infos = newest_first([_info("d-2", 1), _info("d-3", 2, "Failed"), _info("d-1", 0)])
    assert [i["deploymentId"] for i in infos] == ["d-3", "d-2", "d-1"]
    current = version_of(infos[0])
    succeeded = [version_of(i) for i in infos if i["status"] == "Succeeded"]
    # WHEN
    chosen = decisions.fallback_candidates(succeeded, current, frozenset())
    # THEN
    assert [v.id for v in chosen] == ["d-2", "d-1"]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Succeeded", "done"),
        ("Failed", "failed"),
        ("Stopped", "failed"),
        ("Created", "waiting"),
        ("InProgress", "waiting"),
        ("Ready", "waiting"),
    ],
)
def test_deployment_state(status: str, state: str) -> None:
    assert deployment_state(_info("d-9", 0, status))[0] == state


def test_deployment_state_names_the_error() -> None:
    info = _info("d-9", 0, "Failed") | {"errorInformation": {"message": "script failed"}}
    assert deployment_state(info) == ("failed", "deployment d-9 is Failed: script failed")


def test_after_stop_follows_the_rollback_deployment() -> None:
    stopped = _info("d-3", 2, "Stopped") | {"rollbackInfo": {"rollbackDeploymentId": "d-4"}}
    assert after_stop(stopped)[2] == "d-4"
    assert after_stop(_info("d-3", 2, "InProgress")) == (
        "waiting",
        "deployment d-3 is InProgress, no rollback deployment yet",
        None,
    )
    # A deployment that finished before the stop landed leaves the bad revision running.
    assert after_stop(_info("d-3", 2, "Succeeded"))[0] == "failed"


def test_stop_only_restores_the_last_successful_deployment() -> None:
    current = version_of(_info("d-3", 2, "InProgress", key="v3.zip"))
    last_good = version_of(_info("d-2", 1, key="v2.zip"))
    older = version_of(_info("d-1", 0, key="v1.zip"))
    assert stop_restores(current, last_good, last_good).passed
    refused = stop_restores(current, older, last_good)
    assert not refused.passed
    assert "restores d-2" in refused.detail
    assert not stop_restores(current, older, None).passed
