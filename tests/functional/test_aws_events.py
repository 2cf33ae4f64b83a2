"""AWS-native failure events end to end: the receiver over HTTP, the embedded launcher
running the real rollback flow, the moto sandbox (ECS circuit-breaker settings from
tests/fakes/ecs_circuit_breaker.py, which moto lacks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack import sandbox
from flows.verify_deploy import wait_for_bakes
from rollback import aws
from rollback.config import Config
from rollback.platform_rollbacks import AwsPlatformRollbacks
from rollback.runtime import Runtime
from tests.fakes.ecs_circuit_breaker import CircuitBreakerEcs
from tests.functional.receiver_rig import (
    LocalHttp,
    Receiver,
    audit_count,
    edit_config,
    local_verifier,
    running,
    seed_world,
    write_config,
)
from tests.unit.webhooks.helpers import SnsSigner, fixture, sns_notification
from tests.unit.webhooks.test_aws_events import event

SERVICE_ARN = f"arn:aws:ecs:us-east-1:123456789012:service/{sandbox.CLUSTER}/api-staging"


def ecs_failed(kind: str = "ecs-deployment-failed.json") -> dict[str, Any]:
    return event(kind) | {"resources": [SERVICE_ARN]}


@pytest.fixture
def config_path(aws: str, prefect_server: None, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml")


def breaker_receiver(config: Config, on: bool) -> Receiver:
    ecs = CircuitBreakerEcs(aws.client("ecs"), {"api-staging": {"enable": True, "rollback": on}})
    return Receiver(config, platform=AwsPlatformRollbacks(ecs=ecs))


def stop(rx: Receiver) -> None:
    assert rx.app.state.platform_watch.wait_idle(30)
    rx.stop()


def test_ecs_failure_without_circuit_breaker_rollback_rolls_back(config_path: Path) -> None:
    # GIVEN staging/api runs the bad api:4, its circuit breaker detects but does not roll back
    config = seed_world(config_path)
    rx = breaker_receiver(config, on=False)
    try:
        payload = ecs_failed()
        # WHEN the event arrives without a credential, or junk with one  THEN refused
        assert rx.post("/webhooks/aws", json=payload).status_code == 401
        junk = rx.post("/webhooks/aws", content=b"{nope", headers=rx.alarm_bearer())
        assert junk.status_code == 400
        wrong = rx.post("/webhooks/aws", json=payload, headers=rx.bearer())  # the API token
        assert wrong.status_code == 401
        # WHEN the EventBridge API destination delivers it with the alarm token
        resp = rx.post("/webhooks/aws", json=payload, headers=rx.alarm_bearer())
        # THEN our rollback starts, and the Service Action about the same deployment is
        # the same incident
        assert resp.status_code == 202, resp.text
        audit_id = resp.json()["audit_id"]
        twin = ecs_failed("ecs-service-action-deployment-failed.json")
        again = rx.post("/webhooks/aws", json=twin, headers=rx.alarm_bearer())
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert again.json()["audit_id"] == audit_id
        rx.wait()
        assert running() == "api:3"
        record = Runtime(config).audit.get(audit_id)
        assert record is not None and record.trigger == "webhook"
        assert record.authenticated_by == "alarm-token"
        assert record.source_event_id == "aws:ecs:demo-cluster/api-staging/ecs-svc/123"
    finally:
        stop(rx)


def test_circuit_breaker_rollback_is_watched_not_fought(config_path: Path) -> None:
    # GIVEN the circuit breaker rolls staging/api back by itself
    config = seed_world(config_path)
    rx = breaker_receiver(config, on=True)
    try:
        # WHEN the failure arrives
        resp = rx.post("/webhooks/aws", json=ecs_failed(), headers=rx.alarm_bearer())
        # THEN nothing of ours starts: the receiver watches
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["status"] == "watching" and body["failed_version"] == "api:4"
        twin = ecs_failed("ecs-service-action-deployment-failed.json")
        dup = rx.post("/webhooks/aws", json=twin, headers=rx.alarm_bearer())
        assert dup.json() == {"status": "duplicate", "audit_id": body["watch_id"]}
        # WHEN ECS completes its own rollback to api:3
        aws.client("ecs").update_service(
            cluster=sandbox.CLUSTER, service="api-staging", taskDefinition="api:3"
        )
        watch = rx.app.state.platform_watch
        assert watch.wait_idle(30)
        # THEN it is recorded as a rollback by the circuit breaker, api:4 is marked bad,
        # and no rollback of ours ran
        assert watch.results[body["watch_id"]] == "rolled_back"
        rt = Runtime(config)
        rollbacks = [r for r in rt.history.query("staging", "api") if r.kind == "rollback"]
        assert [(r.version, r.from_version, r.trigger) for r in rollbacks] == [
            ("api:3", "api:4", "ecs-circuit-breaker")
        ]
        assert "api:4" in rt.markers.bad_versions("staging", "api")
        assert audit_count(config) == 0
    finally:
        stop(rx)


def test_circuit_breaker_that_does_not_finish_is_taken_over(config_path: Path) -> None:
    # GIVEN the circuit breaker should roll back, with a short stabilize timeout
    def short(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["services"]["api"]["stabilize_timeout_s"] = 0.5

    edit_config(config_path, short)
    config = seed_world(config_path)
    rx = breaker_receiver(config, on=True)
    try:
        # WHEN the failure arrives and ECS never leaves api:4
        resp = rx.post("/webhooks/aws", json=ecs_failed(), headers=rx.alarm_bearer())
        assert resp.json()["status"] == "watching"
        watch = rx.app.state.platform_watch
        assert watch.wait_idle(30)
        # THEN our own rollback was requested through the intake and ran
        result = watch.results[resp.json()["watch_id"]]
        assert result.startswith("fallback:accepted:"), result
        rx.wait()
        assert running() == "api:3"
        record = Runtime(config).audit.get(result.rsplit(":", 1)[1])
        assert record is not None and record.trigger == "webhook"
        assert record.source_event_id is not None
        assert record.source_event_id.endswith("#platform-timeout")
        assert "did not complete" in record.reason
    finally:
        stop(rx)


def test_eventbridge_through_sns_is_signed(
    config_path: Path, local_http: LocalHttp, signer: SnsSigner
) -> None:
    # GIVEN the EventBridge rule targets an SNS topic the receiver accepts
    config = seed_world(config_path)
    ecs = CircuitBreakerEcs(aws.client("ecs"), {})
    rx = Receiver(config, local_verifier(local_http), platform=AwsPlatformRollbacks(ecs=ecs))
    headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"}
    try:
        cert = local_http.url + "/cert.pem"
        message = signer.sign(sns_notification(ecs_failed()), cert)
        tampered = message | {"Message": message["Message"].replace("api-staging", "api")}
        # WHEN a tampered message arrives  THEN refused
        bad = rx.post("/webhooks/aws", content=json.dumps(tampered), headers=headers)
        assert bad.status_code == 401
        # WHEN the signed one arrives  THEN accepted, credential named by its topic
        resp = rx.post("/webhooks/aws", content=json.dumps(message), headers=headers)
        assert resp.status_code == 202, resp.text
        rx.wait()
        record = Runtime(config).audit.get(resp.json()["audit_id"])
        assert record is not None
        assert record.authenticated_by == "sns:arn:aws:sns:us-east-1:123456789012:alarms"
        # an unrelated AWS event through the same topic is ignored, never a rollback
        other = signer.sign(sns_notification(event("ecs-deployment-completed.json")), cert)
        resp = rx.post("/webhooks/aws", content=json.dumps(other), headers=headers)
        assert resp.status_code == 200 and resp.json()["status"] == "ignored"
    finally:
        stop(rx)


def with_verification(data: dict[str, Any]) -> None:
    """Staging/api verified by one CloudWatch metric after each deploy."""
    data["environments"]["staging"]["verification"] = {
        "metrics": [{"name": "cpu", "namespace": "AWS/ECS", "metric": "CPUUtilization"}]
    }


def test_completed_deployment_starts_its_bake_once(config_path: Path) -> None:
    # GIVEN staging/api has verification configured
    edit_config(config_path, with_verification)
    config = seed_world(config_path)
    rx = breaker_receiver(config, on=True)
    try:
        # WHEN ECS reports the deployment completed (20 minutes ago: judged at once)
        done = event("ecs-deployment-completed.json", updatedAt="2020-05-23T11:11:11Z")
        done["resources"] = [SERVICE_ARN]
        resp = rx.post("/webhooks/aws", json=done, headers=rx.alarm_bearer())
        # THEN its verification starts, once per deployment
        assert resp.status_code == 202 and resp.json()["status"] == "verifying", resp.text
        again = rx.post("/webhooks/aws", json=done, headers=rx.alarm_bearer())
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert wait_for_bakes(60)  # no data in that window: inconclusive, nothing starts
        assert audit_count(config) == 0
    finally:
        stop(rx)


def test_github_deployment_success_starts_its_bake(config_path: Path) -> None:
    # GIVEN staging/api has verification and a GitHub rule maps acme deployments to it
    def verify(data: dict[str, Any]) -> None:
        with_verification(data)
        data["webhooks"]["github"]["rules"].append(
            {"repository": "acme/shop", "github_environment": "staging", "environment": "staging",
             "service": "api"}
        )  # fmt: skip

    edit_config(config_path, verify)
    config = seed_world(config_path)
    rx = breaker_receiver(config, on=False)
    try:
        payload = fixture("deployment_status.payload")
        payload["repository"]["full_name"] = "acme/shop"
        payload["deployment"]["environment"] = "staging"
        payload["deployment_status"]["state"] = "success"
        payload["deployment_status"]["created_at"] = "2020-05-23T11:11:11Z"  # long past
        # WHEN GitHub reports the deployment succeeded  THEN its bake starts, once
        resp = rx.github(payload, event="deployment_status")
        assert resp.status_code == 202 and resp.json()["status"] == "verifying", resp.text
        again = rx.github(payload, event="deployment_status")
        assert again.json()["status"] == "duplicate"
        assert wait_for_bakes(60) and audit_count(config) == 0
    finally:
        stop(rx)
