"""CodeDeploy rollbacks against moto's CodeDeploy over HTTP.

moto serves the CodeDeploy API (create/get/list/batch-get deployments) but never moves
a deployment's status, so these tests run it in this process (tests/fakes/codedeploy.py)
and play the CodeDeploy agent by setting statuses. moto lacks ``stop_deployment`` (HTTP
500): that one call, and only it, is covered with botocore's Stubber below.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from flows.rollback_flow import rollback_flow
from rollback import aws as aws_clients
from rollback import decisions
from rollback.errors import NotFoundError
from rollback.models import RollbackRequest
from rollback.targets.codedeploy import CodeDeployConfig, CodeDeployTarget
from tests.fakes.codedeploy import CodeDeployStandIn
from tests.fakes.flow_config import write_config

APP, GROUP = "web", "web-prod"


@pytest.fixture(scope="module")
def codedeploy_server() -> Iterator[CodeDeployStandIn]:
    server = CodeDeployStandIn()
    yield server
    server.stop()


@pytest.fixture
def codedeploy(
    codedeploy_server: CodeDeployStandIn, aws: str, monkeypatch: pytest.MonkeyPatch
) -> CodeDeployStandIn:
    """CodeDeploy calls go to the in-process moto; everything else to the session one."""
    codedeploy_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEDEPLOY", codedeploy_server.url)
    return codedeploy_server


def _revision(n: int) -> dict[str, Any]:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": "releases", "key": f"web-v{n}.zip", "bundleType": "zip"},
    }


def seed(stand_in: CodeDeployStandIn, statuses: list[str]) -> list[str]:
    """Application, group and one deployment per status (v1, v2, ...), oldest first."""
    client = aws_clients.client("codedeploy")
    client.create_application(applicationName=APP, computePlatform="Server")
    client.create_deployment_group(
        applicationName=APP,
        deploymentGroupName=GROUP,
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    ids = []
    for n, status in enumerate(statuses, start=1):
        out = client.create_deployment(
            applicationName=APP,
            deploymentGroupName=GROUP,
            revision=_revision(n),
            description=f"v{n}",
        )
        stand_in.set_status(out["deploymentId"], status)
        ids.append(out["deploymentId"])
        time.sleep(0.01)  # distinct creation times (moto keeps milliseconds)
    return ids


def _target() -> CodeDeployTarget:
    config = CodeDeployConfig(
        type="codedeploy", application=APP, deployment_group=GROUP, poll_interval_s=0.05
    )
    return CodeDeployTarget(config)


def _resolve(target: CodeDeployTarget) -> tuple[Any, Any]:
    current = target.current()
    return current, decisions.fallback_candidates(target.candidates(), current, frozenset())[0]


def test_redeploys_last_successful_revision(codedeploy: CodeDeployStandIn) -> None:
    # GIVEN v1, v2 succeeded and v3 failed; nothing in progress
    v1, v2, v3 = seed(codedeploy, ["Succeeded", "Succeeded", "Failed"])
    target = _target()
    # WHEN the target resolves, checks and redeploys (the agent finishes the deployment)
    current, chosen = _resolve(target)
    checks = target.check(current, chosen)
    with codedeploy.agent("Succeeded"):
        target.execute(chosen)
        new_ids = codedeploy.ids() - {v1, v2, v3}
        settled = target.stabilize(chosen, timeout_s=10, progress=lambda _: None)
    verified = {c.name: c for c in target.verify(chosen)}
    # THEN v2's revision was deployed again as one new deployment, named by verify
    assert (current.id, chosen.id) == (v3, v2)
    assert all(c.passed for c in checks), checks
    assert len(new_ids) == 1
    (new_id,) = new_ids
    info = aws_clients.client("codedeploy").get_deployment(deploymentId=new_id)["deploymentInfo"]
    assert info["revision"]["s3Location"]["key"] == "web-v2.zip"
    assert info["description"].startswith(f"rollback to {v2}")
    assert settled.stable, settled
    assert verified["deployment_succeeded"].passed
    assert new_id in verified["deployment_succeeded"].detail
    assert verified["revision_is_target"].passed


def test_stops_deployment_in_progress_and_waits_for_codedeploy_rollback(
    codedeploy: CodeDeployStandIn,
) -> None:
    # GIVEN v1, v2 succeeded and v3 still in progress
    v1, v2, v3 = seed(codedeploy, ["Succeeded", "Succeeded", "InProgress"])
    target = _target()
    current, chosen = _resolve(target)
    checks = {c.name: c for c in target.check(current, chosen)}
    assert (current.id, chosen.id) == (v3, v2)
    assert checks["stop_restores_target"].passed, checks
    # WHEN execute stops v3. moto has no StopDeployment (HTTP 500), so this one call is
    # answered by botocore's Stubber; it must ask for the automatic rollback.
    with Stubber(target.client) as stub:
        stub.add_response(
            "stop_deployment",
            {"status": "Pending", "statusMessage": "stopping"},
            {"deploymentId": v3, "autoRollbackEnabled": True},
        )
        target.execute(chosen)
        stub.assert_no_pending_responses()
    # AND CodeDeploy (played here) stops v3 and redeploys the last good revision
    first = target.stabilize(chosen, timeout_s=0.2, progress=lambda _: None)
    assert not first.stable and "no rollback deployment yet" in first.detail
    codedeploy.set_status(v3, "Stopped")
    with codedeploy.agent("Succeeded"):
        rollback_id = (
            aws_clients.client("codedeploy")
            .create_deployment(
                applicationName=APP, deploymentGroupName=GROUP, revision=_revision(2)
            )
            .get("deploymentId")
        )
        settled = target.stabilize(chosen, timeout_s=10, progress=lambda _: None)
    verified = {c.name: c for c in target.verify(chosen)}
    # THEN the rollback deployment is followed to Succeeded and verified
    assert settled.stable, settled
    assert rollback_id in settled.detail
    assert all(c.passed for c in verified.values()), verified
    assert rollback_id in verified["deployment_succeeded"].detail


def test_in_progress_refuses_a_target_other_than_last_success(
    codedeploy: CodeDeployStandIn,
) -> None:
    v1, _v2, _v3 = seed(codedeploy, ["Succeeded", "Succeeded", "InProgress"])
    target = _target()
    current = target.current()
    checks = {c.name: c for c in target.check(current, target.lookup(v1))}
    assert not checks["stop_restores_target"].passed
    assert "not " in checks["stop_restores_target"].detail


def test_failed_or_stuck_deployment_is_a_failed_rollback(codedeploy: CodeDeployStandIn) -> None:
    seed(codedeploy, ["Succeeded", "Succeeded", "Failed"])
    target = _target()
    _current, chosen = _resolve(target)
    # WHEN the redeploy fails THEN stabilize reports failure with the status
    with codedeploy.agent("Failed"):
        target.execute(chosen)
        failed = target.stabilize(chosen, timeout_s=10, progress=lambda _: None)
    assert not failed.stable and "is Failed" in failed.detail
    # WHEN a redeploy never finishes THEN stabilize gives up at the timeout
    target.execute(chosen)
    stuck = target.stabilize(chosen, timeout_s=0.3, progress=lambda _: None)
    assert not stuck.stable and stuck.detail.startswith("not done after")
    assert "is Created" in stuck.detail


def test_lookup_by_id_revision_and_description(codedeploy: CodeDeployStandIn) -> None:
    v1, v2, _v3 = seed(codedeploy, ["Succeeded", "Succeeded", "Failed"])
    target = _target()
    assert target.lookup(v1).id == v1
    assert target.lookup("s3://releases/web-v2.zip").id == v2
    assert target.lookup("v1").id == v1
    with pytest.raises(NotFoundError, match="no deployment of web/web-prod"):
        target.lookup("s3://releases/web-v9.zip")
    # A failed deployment is found by id (and refused by the checks), not by revision.
    with pytest.raises(NotFoundError):
        target.lookup("s3://releases/web-v3.zip")


def test_missing_group_is_a_clear_error(codedeploy: CodeDeployStandIn) -> None:
    with pytest.raises(NotFoundError, match="check application and deployment_group"):
        _target().current()


def _flow(tmp_path: Path, **request: Any) -> dict[str, Any]:
    path = write_config(
        tmp_path / "rollback.yaml",
        "web",
        {
            "type": "codedeploy",
            "application": APP,
            "deployment_group": GROUP,
            "stabilize_timeout_s": 10,
        },
    )
    return rollback_flow(
        request=RollbackRequest(environment="staging", service="web", **request),
        config_path=str(path),
    )


def test_flow_redeploys_last_success(
    codedeploy: CodeDeployStandIn, prefect_server: None, tmp_path: Path
) -> None:
    v1, v2, v3 = seed(codedeploy, ["Succeeded", "Succeeded", "Failed"])
    with codedeploy.agent("Succeeded"):
        out = _flow(tmp_path, reason="v3 broke checkout")
    (new_id,) = codedeploy.ids() - {v1, v2, v3}
    assert out["status"] == "succeeded", out
    assert (out["from_version"], out["to_version"]) == (v3, v2)
    detail = {c["name"]: c["detail"] for c in out["checks"]}
    assert new_id in detail["deployment_succeeded"]
    assert codedeploy.status(new_id) == "Succeeded"


def test_flow_failed_redeploy_is_a_failed_rollback(
    codedeploy: CodeDeployStandIn, prefect_server: None, tmp_path: Path
) -> None:
    seed(codedeploy, ["Succeeded", "Succeeded", "Failed"])
    with codedeploy.agent("Failed"):
        out = _flow(tmp_path)
    assert out["status"] == "failed", out
    assert "is Failed" in out["reason"]


def test_flow_refuses_without_earlier_success(
    codedeploy: CodeDeployStandIn, prefect_server: None, tmp_path: Path
) -> None:
    # GIVEN a group whose only deployment is the current one
    (only,) = seed(codedeploy, ["Succeeded"])
    # WHEN
    out = _flow(tmp_path)
    # THEN refused and no deployment was created
    assert out["status"] == "refused", out
    assert "no earlier good version of web" in out["reason"]
    assert codedeploy.ids() == {only}
