"""One credential per entrance, attributable: the API token never opens the alarm
entrance, the alarm token fails closed, and every request names the credential that
admitted it (``authenticated_by``, in the request and in the event claim).
Through the real receiver over HTTP, against the moto server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.receiver import create_app
from flows.launch import EmbeddedLauncher
from rollback.config import Config
from rollback.errors import ConfigError
from rollback.runtime import Runtime
from tests.functional.receiver_rig import (
    TOPIC,
    LocalHttp,
    Receiver,
    audit_count,
    edit_config,
    running,
    write_config,
)
from tests.unit.webhooks.helpers import (
    SnsSigner,
    alarm_action,
    eventbridge_alarm,
    failed_run,
    sns_alarm_message,
    sns_notification,
)


def claim_of(config: Config, event_id: str) -> tuple[str, str | None] | None:
    return Runtime(config).markers.event_claim(event_id)


def test_api_token_never_opens_the_alarm_entrance(receiver: Receiver) -> None:
    # GIVEN a mapped alarm going into ALARM, sent with the REST API's bearer token
    payload = alarm_action("api-5xx")
    resp = receiver.post("/webhooks/cloudwatch", json=payload, headers=receiver.bearer())
    # THEN 401: the alarm entrance has its own credential; nothing is recorded or run
    assert resp.status_code == 401
    assert "webhooks.cloudwatch.token_env" in resp.json()["message"]
    assert audit_count(receiver.config) == 0 and running() == "api:4"
    # WHEN the alarm token is used  THEN accepted, and attributed to that credential
    resp = receiver.post("/webhooks/cloudwatch", json=payload, headers=receiver.alarm_bearer())
    assert resp.status_code == 202, resp.text
    receiver.wait()
    record = Runtime(receiver.config).audit.get(resp.json()["audit_id"])
    assert record is not None and record.trigger == "alarm"
    assert claim_of(receiver.config, record.source_event_id or "") == (
        record.audit_id,
        "alarm-token",
    )
    # and the alarm token does not open the REST API either
    body = {"environment": "staging", "rollback_type": "quick", "user_id": "a", "reason": "r"}
    resp = receiver.post("/rollback", json=body, headers=receiver.alarm_bearer())
    assert resp.status_code == 401


def test_no_alarm_token_refuses_the_alarm_shapes(world: Config) -> None:
    # GIVEN a receiver whose alarm token variable is not set
    rx = Receiver(world, environ={"TEST_ALARM_TOKEN": ""})
    try:
        for payload in (alarm_action("api-5xx"), eventbridge_alarm("api-5xx")):
            # WHEN an alarm arrives with any bearer token (even an empty-looking one)
            for header in (rx.bearer(), {"Authorization": "Bearer"}, rx.alarm_bearer()):
                resp = rx.post("/webhooks/cloudwatch", json=payload, headers=header)
                # THEN refused (fail closed), naming the setting, not a value
                assert resp.status_code == 401, resp.text
                assert "TEST_ALARM_TOKEN" in resp.json()["message"]
        assert audit_count(world) == 0
    finally:
        rx.stop()


def test_alarm_token_equal_to_the_api_token_is_refused(world: Config) -> None:
    # GIVEN an operator who put the API token's value in the alarm token variable too
    rx = Receiver(world)
    rx.stop()
    same = Receiver(world, environ={"TEST_ALARM_TOKEN": rx.token, "TEST_API_TOKEN": rx.token})
    try:
        resp = same.post(
            "/webhooks/cloudwatch",
            json=alarm_action("api-5xx"),
            headers={"Authorization": f"Bearer {rx.token}"},
        )
        # THEN the alarm entrance refuses bearer auth, saying why, never the value
        assert resp.status_code == 401
        assert "equals the API token" in resp.json()["message"]
        assert rx.token not in resp.text
        assert audit_count(world) == 0
    finally:
        same.stop()


def test_receiver_refuses_to_start_when_both_entrances_share_a_variable(
    world: Config, tmp_path: Path
) -> None:
    # GIVEN a config whose alarm token and API token name the same variable
    def same_variable(data: dict) -> None:  # type: ignore[type-arg]
        data["webhooks"]["cloudwatch"] = {"token_env": "TEST_API_TOKEN"}

    config = edit_config(write_config(tmp_path / "same.yaml"), same_variable)
    # WHEN the receiver is built  THEN it refuses, naming both settings
    with pytest.raises(ConfigError, match="api_token_env and webhooks.cloudwatch.token_env"):
        create_app(config, EmbeddedLauncher(config), environ={})


def test_every_entrance_names_its_credential(
    sns_receiver: Receiver, local_http: LocalHttp, signer: SnsSigner
) -> None:
    # GIVEN a receiver with all four entrances
    rx = sns_receiver
    rt = Runtime(rx.config)
    # WHEN a GitHub failure arrives  THEN its claim names github-hmac
    resp = rx.github(failed_run())
    assert resp.status_code == 202, resp.text
    rx.wait()
    github_event = "github:octo-org/octo-repo/actions/runs/289782451/attempts/1"
    assert rt.markers.event_claim(github_event) == (resp.json()["audit_id"], "github-hmac")
    # WHEN an SNS alarm arrives (the service now in cooldown: refused by the flow,
    # still recorded)  THEN its claim names the topic
    message = signer.sign(
        sns_notification(sns_alarm_message("api-5xx")), local_http.url + "/cert.pem"
    )
    resp = rx.post("/webhooks/cloudwatch", content=json.dumps(message))
    assert resp.status_code in (200, 202), resp.text
    rx.wait()
    claim = rt.markers.event_claim(f"cloudwatch:sns:{message['MessageId']}")
    assert claim is not None and claim[1] == f"sns:{TOPIC}"
    # WHEN the REST API is called with an Idempotency-Key  THEN api-token
    body = {
        "environment": "staging",
        "rollback_type": "quick",
        "user_id": "alice",
        "reason": "checkout errors",
        "dry_run": True,
    }
    resp = rx.post("/rollback", json=body, headers=rx.bearer() | {"Idempotency-Key": "k-1"})
    assert resp.status_code == 200, resp.text
    rx.wait()
    assert rt.markers.event_claim("api:k-1") == (resp.json()["data"]["audit_id"], "api-token")
    # and no secret was ever answered
    for text in rx.texts:
        assert rx.token not in text and rx.github_secret not in text
