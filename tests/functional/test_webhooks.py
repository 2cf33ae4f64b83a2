"""The receiver end to end: the real FastAPI app, the embedded launcher running the real
rollback flow on the session Prefect server, against the moto sandbox."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.cli.serve import background_server
from deployments.receiver import create_app
from deployments.signatures import SnsVerifier
from rollback import aws
from rollback.config import Config, load_config
from rollback.models import AuditRecord, Status, utcnow
from rollback.runtime import Runtime
from rollback.stores.audit_table import BY_SERVICE
from tests.functional.receiver_rig import (
    REPO,
    LocalHttp,
    Receiver,
    audit_count,
    edit_config,
    running,
    seed_world,
    write_config,
)
from tests.unit.webhooks.helpers import (
    SnsSigner,
    alarm_action,
    eventbridge_alarm,
    failed_run,
    github_headers,
    new_secret,
    sns_alarm_message,
    sns_notification,
    sns_time,
)


def test_signed_failure_rolls_the_service_back(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the staging service runs the bad v4 and its deploy workflow failed
    caplog.set_level(logging.INFO)
    assert running() == "api:4"
    # WHEN GitHub delivers the signed workflow_run event
    resp = receiver.github(failed_run())
    # THEN it is accepted at once, and the rollback puts the service back on v3
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "accepted" and body["audit_id"] and body["flow_run_id"]
    assert body["monitor_url"].endswith(f"/runs/flow-run/{body['flow_run_id']}")
    receiver.wait()
    assert running() == "api:3"
    assert receiver.launcher.results[body["audit_id"]]["status"] == "succeeded"
    record = Runtime(receiver.config).audit.get(body["audit_id"])
    assert record is not None and record.trigger == "webhook"
    assert record.flow_run_id == body["flow_run_id"]
    receiver.assert_no_secret(caplog)


@pytest.mark.parametrize("secret", [None, "wrong"], ids=["no-signature", "wrong-secret"])
def test_unsigned_or_wrongly_signed_delivery_is_refused(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, secret: str | None
) -> None:
    # GIVEN a failed deploy run  WHEN it arrives unsigned or signed with another secret
    resp = receiver.github(failed_run(), secret=None if secret is None else new_secret())
    # THEN 401, and nothing is started or recorded
    assert resp.status_code == 401
    assert resp.json() == {"status": "error", "message": "missing or invalid X-Hub-Signature-256"}
    receiver.wait()
    assert running() == "api:4" and audit_count(receiver.config) == 0
    receiver.assert_no_secret(caplog)


def test_tampered_body_is_refused(receiver: Receiver) -> None:
    # GIVEN a correctly signed body  WHEN one byte changes on the way
    body = json.dumps(failed_run()).encode()
    headers = github_headers(receiver.github_secret, body)
    tampered = body.replace(b'"failure"', b'"failurE"')
    resp = receiver.post("/webhooks/github", content=tampered, headers=headers)
    # THEN the signature no longer matches
    assert resp.status_code == 401
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    assert receiver.post("/webhooks/github", content=body, headers=headers).status_code == 401


def test_redelivery_starts_one_rollback(receiver: Receiver) -> None:
    # GIVEN a delivery that was accepted
    first = receiver.github(failed_run(), delivery="delivery-1")
    assert first.status_code == 202
    # WHEN GitHub redelivers it, during the rollback and after it
    during = receiver.github(failed_run(), delivery="delivery-1")
    receiver.wait()
    after = receiver.github(failed_run(), delivery="delivery-1")
    # THEN both answer with the same audit id and nothing new starts
    for resp in (during, after):
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "duplicate"
        assert resp.json()["audit_id"] == first.json()["audit_id"]
        assert resp.json()["flow_run_id"] == first.json()["flow_run_id"]
    receiver.wait()
    assert running() == "api:3" and audit_count(receiver.config) == 1


def test_redelivery_to_a_restarted_receiver_starts_nothing(world: Config) -> None:
    # GIVEN a delivery accepted by one receiver process, which then went away
    one = Receiver(world)
    first = one.github(failed_run(), delivery="delivery-2")
    one.wait()
    one.close()
    # WHEN the redelivery reaches a fresh receiver (no memory of it)
    two = Receiver(world)
    two.github_secret = one.github_secret
    two.app = create_app(world, two.launcher, environ={"TEST_GITHUB_SECRET": one.github_secret})
    two.close()
    with background_server(two.app) as url:
        body = json.dumps(failed_run()).encode()
        resp = httpx.post(
            url + "/webhooks/github",
            content=body,
            headers=github_headers(one.github_secret, body, "delivery-2"),
        )
    # THEN the audit store's claim answers: same audit id and run, nothing started
    assert resp.json()["status"] == "duplicate"
    assert resp.json()["audit_id"] == first.json()["audit_id"]
    assert resp.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert two.launcher.busy("staging", "api") is None and audit_count(world) == 1


@pytest.mark.parametrize(
    "run",
    [
        {"name": "Rollback production", "path": ".github/workflows/deploy.yml"},
        {"name": "", "path": ".github/workflows/rollback.yml"},
        {"display_title": "rollback:4f2a staging/api to api:3"},
    ],
    ids=["name", "path", "dispatched-by-us"],
)
def test_rollback_workflows_are_ignored(receiver: Receiver, run: dict[str, Any]) -> None:
    # GIVEN a failed run of a rollback workflow (or one our GitHub target dispatched)
    payload = failed_run(**run)
    payload["workflow"]["name"] = run.get("name") or payload["workflow"]["name"]
    # WHEN it is delivered  THEN it is ignored: a rollback never triggers a rollback
    resp = receiver.github(payload)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ignored"
    assert "loop prevention" in resp.json()["reason"]
    assert audit_count(receiver.config) == 0


def test_unmapped_and_uninteresting_events_are_ignored(receiver: Receiver) -> None:
    # GIVEN events no rule asks for
    other_repo = failed_run()
    other_repo["repository"]["full_name"] = "octo-org/other"
    other_repo["workflow_run"]["head_repository"]["full_name"] = "octo-org/other"
    cases = [
        (other_repo, "workflow_run", "no rule maps octo-org/other"),
        (failed_run(conclusion="success"), "workflow_run", "concluded 'success'"),
        (failed_run(name="lint", path=".github/workflows/lint.yml"), "workflow_run", None),
        (json.loads(json.dumps(failed_run())), "push", "not handled"),
        ({"zen": "Keep it simple.", "hook_id": 1}, "ping", "ping"),
    ]
    for payload, event, reason in cases:
        # WHEN each is delivered, signed  THEN 200 ignored with the reason
        resp = receiver.github(payload, event=event)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "ignored"
        if reason:
            assert reason in resp.json()["reason"]
    assert audit_count(receiver.config) == 0


def test_branch_rule_and_deployment_status(world: Config, tmp_path: Path) -> None:
    # GIVEN rules by branch and by GitHub deployment environment
    rules = [
        {
            "repository": REPO,
            "workflow": "test",
            "branch": "main",
            "environment": "staging",
            "service": "api",
        },
        {
            "repository": "Codertocat/Hello-World",
            "github_environment": "production",
            "environment": "staging",
            "service": "api",
        },
    ]
    config = edit_config(
        write_config(tmp_path / "rules.yaml"),
        lambda data: data["webhooks"]["github"].update(rules=rules),
    )
    rx = Receiver(config)
    try:
        # WHEN a failure on another branch arrives  THEN no rule matches
        assert rx.github(failed_run()).json()["status"] == "ignored"  # head_branch master
        # WHEN the real deployment_status payload reports a failure  THEN it is accepted
        from tests.unit.webhooks.helpers import fixture

        status = fixture("deployment_status.payload")
        status["deployment_status"]["state"] = "failure"
        resp = rx.github(status, event="deployment_status")
        assert resp.status_code == 202, resp.text
        rx.wait()
        assert running() == "api:3"
    finally:
        rx.close()
        rx.launcher.close()


def test_malformed_and_oversized_bodies(receiver: Receiver) -> None:
    # GIVEN a signed body that is not JSON  THEN 400 with a clear message
    resp = receiver.github(b"{not json")
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["message"]
    # GIVEN a signed body over 1 MiB  THEN 413, before any signature work
    big = json.dumps(failed_run() | {"padding": "x" * (1024 * 1024)}).encode()
    resp = receiver.github(big)
    assert resp.status_code == 413 and "over 1048576 bytes" in resp.json()["message"]
    # a chunked upload (no Content-Length) is cut at the limit too
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    resp = receiver.post(
        "/webhooks/github", content=chunks, headers=github_headers(receiver.github_secret, big)
    )
    assert resp.status_code == 413
    assert audit_count(receiver.config) == 0


# -- POST /rollback -------------------------------------------------------------------------
def rollback_body(**fields: Any) -> dict[str, Any]:
    return {
        "environment": "staging",
        "rollback_type": "quick",
        "user_id": "alice",
        "reason": "checkout errors",
    } | fields


def test_rest_rollback_to_an_image_tag(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a dashboard call with the token and an image tag
    resp = receiver.post("/rollback", json=rollback_body(image_tag="v2"), headers=receiver.bearer())
    # THEN success with the contract's fields, and the service ends on that image
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success" and body["message"] == "Rollback initiated"
    data = body["data"]
    assert set(data) >= {
        "audit_id",
        "workflow_run_id",
        "environment",
        "rollback_type",
        "image_tag",
        "estimated_duration",
        "monitor_url",
    }
    assert data["environment"] == "staging" and data["service"] == "api"
    assert data["rollback_type"] == "quick" and data["image_tag"] == "v2"
    receiver.wait()
    assert running() == "api:2"
    record = Runtime(receiver.config).audit.get(data["audit_id"])
    assert record is not None and record.requested_by == "alice" and record.trigger == "manual"
    receiver.assert_no_secret(caplog)


def test_rest_rollback_errors(receiver: Receiver) -> None:
    auth = receiver.bearer()
    cases = [
        ({}, None, 401, "missing or invalid bearer token"),
        (rollback_body(), {"Authorization": "Bearer nope"}, 401, "bearer token"),
        (rollback_body(), {"Authorization": receiver.token}, 401, "bearer token"),
        ({"rollback_type": "quick"}, auth, 400, "environment is required"),
        (rollback_body(user_id=""), auth, 400, "user_id is required"),
        (rollback_body(image_tag=3), auth, 400, "image_tag must be a string"),
        (rollback_body(environment="qa"), auth, 404, "unknown environment 'qa'"),
        (rollback_body(service="web"), auth, 404, "unknown service 'web'"),
    ]
    for body, headers, status, message in cases:
        resp = receiver.post("/rollback", json=body, headers=headers or {})
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["status"] == "error" and message in resp.json()["message"]
    resp = receiver.post("/rollback", content=b"[1,", headers=auth)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["message"]
    # GIVEN a rollback of staging/api in flight (another process holds the lock)
    Runtime(receiver.config).locks.acquire("staging", "api", "other-audit", 60)
    resp = receiver.post("/rollback", json=rollback_body(), headers=auth)
    # THEN 409 naming it, and nothing starts
    assert resp.status_code == 409
    assert resp.json() == {
        "status": "error",
        "message": "a rollback of staging/api is already in flight (audit other-audit)",
    }
    assert audit_count(receiver.config) == 0 and running() == "api:4"


# -- CloudWatch alarms ------------------------------------------------------------------------
def test_alarm_action_rolls_back(receiver: Receiver) -> None:
    # GIVEN the real alarm-action payload for a mapped alarm going OK -> ALARM
    payload = alarm_action()  # "Test alert"
    # WHEN it arrives without the token  THEN 401
    assert receiver.post("/webhooks/cloudwatch", json=payload).status_code == 401
    # WHEN it arrives with the alarm token  THEN accepted, and the service rolls back
    resp = receiver.post("/webhooks/cloudwatch", json=payload, headers=receiver.alarm_bearer())
    assert resp.status_code == 202, resp.text
    receiver.wait()
    assert running() == "api:3"
    record = Runtime(receiver.config).audit.get(resp.json()["audit_id"])
    assert record is not None and record.trigger == "alarm"


def test_alarm_shapes_and_transitions(receiver: Receiver) -> None:
    auth = receiver.alarm_bearer()
    ignored = [
        (eventbridge_alarm("api-5xx", new="OK", old="ALARM"), "went to OK"),
        (eventbridge_alarm("api-5xx", new="ALARM", old="ALARM"), "already in ALARM"),
        (eventbridge_alarm("db-cpu"), "not mapped"),
        (alarm_action("api-5xx", new="INSUFFICIENT_DATA"), "went to INSUFFICIENT_DATA"),
    ]
    for payload, reason in ignored:
        resp = receiver.post("/webhooks/cloudwatch", json=payload, headers=auth)
        assert resp.status_code == 200 and reason in resp.json()["reason"], resp.text
    resp = receiver.post("/webhooks/cloudwatch", json={"hello": 1}, headers=auth)
    assert resp.status_code == 400 and "not a CloudWatch alarm" in resp.json()["message"]
    # GIVEN the EventBridge shape of a mapped alarm going into ALARM  THEN accepted
    event = eventbridge_alarm("api-5xx")
    resp = receiver.post("/webhooks/cloudwatch", json=event, headers=auth)
    assert resp.status_code == 202, resp.text
    # and the same event id again is a duplicate
    again = receiver.post("/webhooks/cloudwatch", json=event, headers=auth)
    assert again.json()["status"] == "duplicate"
    assert again.json()["audit_id"] == resp.json()["audit_id"]
    receiver.wait()
    assert running() == "api:3" and audit_count(receiver.config) == 1


def test_sns_notification_signed_and_tampered(
    sns_receiver: Receiver, local_http: LocalHttp, signer: SnsSigner
) -> None:
    receiver = sns_receiver
    cert = local_http.url + "/cert.pem"
    headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"}
    # GIVEN an SNS notification signed with a key that is not the certificate's
    forged = SnsSigner().sign(sns_notification(sns_alarm_message("api-5xx")), cert)
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(forged), headers=headers)
    assert resp.status_code == 401 and "does not match" in resp.json()["message"]
    # GIVEN a correctly signed one whose message was altered on the way
    signed = signer.sign(sns_notification(sns_alarm_message("api-5xx")), cert, version="1")
    altered = signed | {"Message": signed["Message"].replace("ALARM", "OK", 1)}
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(altered), headers=headers)
    assert resp.status_code == 401
    # GIVEN a signed one whose certificate URL is not an SNS host (default check)
    strict = create_app(receiver.config, receiver.launcher, sns_verifier=SnsVerifier())
    with background_server(strict) as url:
        resp = httpx.post(url + "/webhooks/cloudwatch", content=json.dumps(signed), headers=headers)
    assert resp.status_code == 401 and "not an SNS host" in resp.json()["message"]
    assert audit_count(receiver.config) == 0
    # WHEN the genuine signed notification arrives (SignatureVersion 1 and 2)
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(signed), headers=headers)
    # THEN it is accepted without a bearer token, and the service rolls back
    assert resp.status_code == 202, resp.text
    v2 = signer.sign(sns_notification(sns_alarm_message("api-5xx", new="OK", old="ALARM")), cert)
    resp2 = receiver.post("/webhooks/cloudwatch", content=json.dumps(v2), headers=headers)
    assert resp2.status_code == 200 and resp2.json()["status"] == "ignored"
    receiver.wait()
    assert running() == "api:3"


def test_sns_subscription_confirmation(
    sns_receiver: Receiver, local_http: LocalHttp, signer: SnsSigner
) -> None:
    receiver = sns_receiver
    # GIVEN a signed SubscriptionConfirmation
    message = signer.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-1",
            "Token": "tok-123",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
            "Message": "You have chosen to subscribe to the topic ...",
            "SubscribeURL": local_http.url + "/confirm?Action=ConfirmSubscription&Token=tok-123",
            "Timestamp": sns_time(),
        },
        local_http.url + "/cert.pem",
    )
    # WHEN it arrives  THEN the receiver visits the SubscribeURL
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(message))
    assert resp.status_code == 200 and resp.json()["status"] == "confirmed", resp.text
    assert any(hit.startswith("/confirm?") for hit in local_http.hits)
    # and an unsigned one is refused before anything is visited
    local_http.hits.clear()
    unsigned = {k: v for k, v in message.items() if k != "Signature"}
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(unsigned))
    assert resp.status_code == 401 and not local_http.hits


# -- health guard -----------------------------------------------------------------------------
def guard_config(tmp_path: Path, guard: dict[str, Any]) -> Path:
    return write_config(tmp_path / "guard.yaml", health_guard=guard)


def test_health_guard_rolls_back_after_consecutive_failures(
    aws: str, prefect_server: None, tmp_path: Path, local_http: LocalHttp
) -> None:
    from flows.health_guard import health_guard_flow
    from rollback.stores.health_state import HealthStateStore

    path = guard_config(
        tmp_path,
        {
            "failures_to_trigger": 2,
            "services": [
                {"environment": "staging", "service": "api", "url": local_http.url + "/health"}
            ],
        },
    )
    config = seed_world(path)
    # GIVEN a healthy service  WHEN the guard runs  THEN nothing happens
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert tick["healthy"] and tick["failures"] == 0 and tick["rollback"] is None
    # GIVEN the health URL starts failing  WHEN the guard runs once  THEN it only counts
    local_http.status = 503
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert not tick["healthy"] and tick["failures"] == 1 and tick["rollback"] is None
    store = HealthStateStore(config.stores.audit_table)
    assert store.get("staging", "api").failures == 1  # in the store, not in memory
    # WHEN it fails a second time in a row  THEN a rollback (trigger health) runs
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert tick["failures"] == 2 and tick["rollback"]["status"] == "accepted"
    assert running() == "api:3"
    record = Runtime(config).audit.get(tick["rollback"]["audit_id"])
    assert record is not None and record.trigger == "health" and record.status.value == "succeeded"
    # WHEN it keeps failing  THEN the same streak asks nothing new
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert tick["rollback"]["status"] == "duplicate"
    assert tick["rollback"]["audit_id"] == record.audit_id
    # WHEN it recovers  THEN the count resets
    local_http.status = 200
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert tick["healthy"] and store.get("staging", "api").failures == 0


def test_health_guard_metric_thresholds(aws: str, prefect_server: None, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from flows.health_guard import health_guard_flow

    path = guard_config(
        tmp_path,
        {
            "failures_to_trigger": 1,
            "services": [
                {
                    "environment": "staging",
                    "service": "api",
                    "lambda_function": "api-fn",
                    "api_name": "api-gw",
                }
            ],
        },
    )
    seed_world(path)
    cw = aws_client("cloudwatch")

    def put(namespace: str, dim: str, value: str, **metrics: float) -> None:
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": dim, "Value": value}],
                    "Value": v,
                    "Timestamp": datetime.now(UTC),
                }
                for name, v in metrics.items()
            ],
        )

    # GIVEN Lambda errors at 4% and API 5XX at 8% (both under the defaults 5% / 10%)
    put("AWS/Lambda", "FunctionName", "api-fn", Errors=4, Invocations=100)
    put("AWS/ApiGateway", "ApiName", "api-gw", **{"5XXError": 8, "Count": 100})
    [tick] = health_guard_flow(str(path), mode="embedded")
    assert tick["healthy"], tick
    # WHEN the Lambda errors climb to 10% (8 more of 50 more invocations)
    put("AWS/Lambda", "FunctionName", "api-fn", Errors=12, Invocations=50)
    [tick] = health_guard_flow(str(path), mode="embedded")
    # THEN the breach is named and the rollback runs
    failed = {c["name"]: c for c in tick["checks"] if not c["passed"]}
    assert set(failed) == {"lambda_error_rate"} and "10.7%" in failed["lambda_error_rate"]["detail"]
    assert tick["rollback"]["status"] == "accepted"
    assert running() == "api:3"


def aws_client(name: str) -> Any:
    return aws.client(name)


# -- history and stats ------------------------------------------------------------------------
def test_history_and_stats(receiver: Receiver) -> None:
    auth = receiver.bearer()
    assert receiver.client.get("/healthz").json() == {"status": "ok", "mode": "embedded"}
    assert receiver.client.get("/deployment/history?environment=staging").status_code == 401
    resp = receiver.client.get("/deployment/history?environment=staging&limit=3", headers=auth)
    assert resp.status_code == 200, resp.text
    rows = resp.json()["data"]
    assert [r["version"] for r in rows] == ["api:4", "api:3", "api:2"]
    # the seed's paths: no environment = every environment; one record by id; period
    every = receiver.client.get("/deployment/history?limit=10", headers=auth)
    assert every.status_code == 200, every.text
    assert len(every.json()["data"]) >= 3
    one = receiver.client.get(f"/deployment/history/{rows[0]['record_id']}", headers=auth)
    assert one.status_code == 200 and one.json()["data"]["version"] == "api:4"
    missing = receiver.client.get("/deployment/history/no-such-id", headers=auth)
    assert missing.status_code == 404
    assert receiver.client.get("/deployment/history/x").status_code == 401
    period = receiver.client.get("/deployment/stats?environment=staging&period=1", headers=auth)
    assert period.json()["data"]["window"]["days"] == 1
    resp = receiver.client.get("/deployment/history?environment=qa", headers=auth)
    assert resp.status_code == 404
    resp = receiver.client.get("/deployment/stats?environment=staging&days=7", headers=auth)
    assert resp.status_code == 200, resp.text
    stats = resp.json()["data"]["stats"]
    # the same numbers the report computes: 4 deploys in the window, 3 succeeded
    assert stats["totalDeployments"] == 4 and stats["successfulDeployments"] == 3
    assert stats["successRate"] == 75.0
    assert (
        receiver.client.get(
            "/deployment/stats?environment=staging&days=0", headers=auth
        ).status_code
        == 400
    )


class CountingDynamodb:
    """The real DynamoDB client (the moto server), counting the Scans of each table and
    keeping the arguments of every Query."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.scans: Counter[str] = Counter()
        self.queries: list[dict[str, Any]] = []

    def scan(self, **kwargs: Any) -> Any:
        self.scans[kwargs["TableName"]] += 1
        return self._client.scan(**kwargs)

    def query(self, **kwargs: Any) -> Any:
        self.queries.append(kwargs)
        return self._client.query(**kwargs)

    def clear(self) -> None:
        self.scans.clear()
        self.queries.clear()

    def audit_reads(self, table: str) -> list[str]:
        """The service keys of the Queries of ``table``'s by-service index, each checked
        to start at a time (``requested_at >=``), not to read the whole service."""
        found = []
        for q in self.queries:
            if q["TableName"] != table:
                continue
            assert q["IndexName"] == BY_SERVICE, q
            assert "requested_at >= " in q["KeyConditionExpression"], q
            found.append(q["ExpressionAttributeValues"][":k"]["S"])
        return sorted(found)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_stats_of_every_environment_read_each_service_once(world: Config) -> None:
    # GIVEN the receiver's stores reached through a client that counts Scans and keeps
    # Queries, and the numbers of each environment asked for on its own
    dynamodb = CountingDynamodb(aws.client("dynamodb"))
    rx = Receiver(world, runtime=Runtime(world, dynamodb=dynamodb))
    try:
        auth = rx.bearer()
        alone = {
            env: rx.client.get(f"/deployment/stats?environment={env}&days=7", headers=auth)
            for env in ("prod", "staging")
        }
        dynamodb.clear()
        # WHEN the dashboard asks for every environment at once
        resp = rx.client.get("/deployment/stats?days=7", headers=auth)
        # THEN the audit table is not scanned: each configured service's attempts are one
        # Query, once for every environment, not once per environment
        assert resp.status_code == 200, resp.text
        assert dynamodb.scans[world.stores.audit_table] == 0
        assert dynamodb.audit_reads(world.stores.audit_table) == [
            "prod#api",
            "prod#worker",
            "staging#api",
        ]
        # and each environment's numbers are the ones it gets alone
        every = resp.json()["data"]["environments"]
        assert sorted(every) == ["prod", "staging"]
        for env, one in alone.items():
            assert one.status_code == 200, one.text
            expected = one.json()["data"]
            assert every[env]["stats"] == expected["stats"]
            assert every[env]["rollbacks"] == expected["rollbacks"]
            assert every[env]["services"] == expected["services"]
        assert every["staging"]["stats"]["totalDeployments"] == 4
    finally:
        rx.stop()


def test_stats_of_one_environment_query_its_services_not_scan_the_audit(world: Config) -> None:
    # GIVEN an alarm rollback of staging/api two hours ago in the audit log, and the
    # receiver's stores reached through a client that counts Scans and keeps Queries
    Runtime(world).audit.create(
        AuditRecord(
            "stats-rb",
            "staging",
            "api",
            Status.SUCCEEDED,
            requested_at=utcnow() - timedelta(hours=2),
            trigger="alarm",
        )
    )
    dynamodb = CountingDynamodb(aws.client("dynamodb"))
    rx = Receiver(world, runtime=Runtime(world, dynamodb=dynamodb))
    try:
        dynamodb.clear()
        # WHEN staging's numbers are asked for
        resp = rx.client.get("/deployment/stats?environment=staging&days=7", headers=rx.bearer())
        # THEN the attempt is counted
        assert resp.status_code == 200, resp.text
        rollbacks = resp.json()["data"]["rollbacks"]
        assert rollbacks["count"] == 1 and rollbacks["byTrigger"]["alarm"]["succeeded"] == 1
        # AND the audit table is not scanned: one Query of the by-service index for each
        # configured service of staging (api), from the start of what the report reads
        assert dynamodb.scans[world.stores.audit_table] == 0
        assert dynamodb.audit_reads(world.stores.audit_table) == ["staging#api"]
    finally:
        rx.stop()


# -- the deployment path: a real Prefect server, a served deployment, `rollback serve` -------
def _spawn(args: list[str], env: dict[str, str], log: Path) -> Any:
    import subprocess

    out = log.open("wb")
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait(check: Any, timeout: float, what: str, procs: list[Any]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args[:3]} exited while waiting for {what}"
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


ROOT = Path(__file__).resolve().parents[2]


def _deploy_rollback_auto(api: str, pool: str) -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.rollback_flow import rollback_flow

    httpx.post(f"{api}/work_pools/", json={"name": pool, "type": "process"}, timeout=10)
    flow = httpx.post(f"{api}/flows/", json={"name": "rollback"}, timeout=10).json()
    resp = httpx.post(
        f"{api}/deployments/",
        json={
            "name": "rollback-auto",
            "flow_id": flow["id"],
            "entrypoint": "flows.rollback_flow.rollback_flow",
            "work_pool_name": pool,
            "pull_steps": [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ],
            "parameter_openapi_schema": parameter_schema(rollback_flow.fn).model_dump_for_openapi(),
            "enforce_parameter_schema": True,
        },
        timeout=10,
    )
    assert resp.status_code in (200, 201), resp.text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_deployment_path_with_a_prefect_server(aws: str, tmp_path: Path) -> None:
    import os
    import sys

    from tests.servers import free_port

    # GIVEN a Prefect server, the rollback flow served as rollback/rollback-auto, and the
    # receiver in deployment mode — each a real process
    path = write_config(tmp_path / "config.yaml")
    edit_config(path, lambda data: data["webhooks"].update(mode="deployment"))
    seed_world(path)
    api_port, rx_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}/api"
    secret, token = new_secret(), new_secret()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env = base | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/prefect.db",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    client_env = env | {"PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    bin_dir = Path(sys.executable).parent
    procs: list[Any] = []
    try:
        procs.append(
            _spawn(
                [
                    str(bin_dir / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                ],
                env,
                tmp_path / "server.log",
            )
        )
        _wait(
            lambda: httpx.get(api + "/health", timeout=2).status_code == 200,
            45,
            "the server",
            procs,
        )
        # The deployment as prefect.yaml declares it: a process work pool, code in place
        # (set_working_directory), a module-path entrypoint; a process worker runs it.
        _deploy_rollback_auto(api, "test-pool")
        worker = [str(bin_dir / "prefect"), "worker", "start", "--pool", "test-pool"]
        worker_env = client_env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
        procs.append(_spawn(worker, worker_env, tmp_path / "worker.log"))
        rx_env = client_env | {"TEST_GITHUB_SECRET": secret, "TEST_API_TOKEN": token}
        cli = [str(bin_dir / "rollback"), "serve", "--config", str(path), "--port", str(rx_port)]
        procs.append(_spawn(cli, rx_env, tmp_path / "receiver.log"))
        url = f"http://127.0.0.1:{rx_port}"
        health = _wait(
            lambda: httpx.get(url + "/healthz", timeout=2).json(), 30, "the receiver", procs
        )
        assert health == {"status": "ok", "mode": "deployment"}
        # WHEN a signed failure arrives, and again as a redelivery
        body = json.dumps(failed_run()).encode()
        headers = github_headers(secret, body, "delivery-deploy-1")
        first = httpx.post(url + "/webhooks/github", content=body, headers=headers, timeout=10)
        again = httpx.post(url + "/webhooks/github", content=body, headers=headers, timeout=10)
        # THEN one deployment run is started, named in both answers
        assert first.status_code == 202, first.text
        run_id = first.json()["flow_run_id"]
        assert again.json()["status"] == "duplicate" and again.json()["flow_run_id"] == run_id
        assert (
            first.json()["monitor_url"] == f"http://127.0.0.1:{api_port}/v2/runs/flow-run/{run_id}"
        )
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=5).json()
        assert run["idempotency_key"] == f"github:{REPO}/actions/runs/289782451/attempts/1"
        assert run["parameters"]["audit_id"] == first.json()["audit_id"]
        # and the worker side rolls the service back
        _wait(lambda: running() == "api:3", 60, "the rollback", procs)
        _wait(
            lambda: (
                httpx.get(f"{api}/flow_runs/{run_id}", timeout=5).json()["state_type"]
                == "COMPLETED"
            ),
            30,
            "the run to complete",
            procs,
        )
        record = Runtime(load_config(path)).audit.get(first.json()["audit_id"])
        assert record is not None and record.flow_run_id == run_id
        # the rollback.requested event is in the feed
        events = httpx.post(
            f"{api}/events/filter",
            json={"filter": {"event": {"name": ["rollback.requested"]}}, "limit": 10},
            timeout=5,
        ).json()["events"]
        assert [e["resource"]["prefect.resource.id"] for e in events] == [
            "rollback.service.staging.api"
        ]
        logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("receiver", "worker"))
        assert secret not in logs and token not in logs
    finally:
        import signal

        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                os.killpg(proc.pid, signal.SIGKILL)
