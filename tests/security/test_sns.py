"""SNS: only the configured topics (none by default), only fresh messages, the signing
certificate from the topic's own region, a bounded certificate cache, and a stalled
certificate fetch that delays only its own request."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.cli.serve import background_server
from deployments.receiver import create_app
from deployments.signatures import SnsVerifier
from rollback.config import Config
from tests.functional.receiver_rig import (
    TOPIC,
    LocalHttp,
    Receiver,
    audit_count,
    edit_config,
    local_verifier,
    running,
    write_config,
)
from tests.unit.webhooks.helpers import (
    SnsSigner,
    failed_run,
    sns_alarm_message,
    sns_notification,
    sns_time,
)

OTHER_TOPIC = "arn:aws:sns:us-east-1:999999999999:alarms"


@pytest.fixture
def receiver(sns_receiver: Receiver) -> Receiver:
    """Here every receiver fetches SNS certificates from ``local_http``."""
    return sns_receiver


def alarm(signer: SnsSigner, cert: str, topic: str = TOPIC, **fields: Any) -> dict[str, Any]:
    return signer.sign(sns_notification(sns_alarm_message("api-5xx"), topic) | fields, cert)


def subscription(signer: SnsSigner, local: LocalHttp, topic: str) -> dict[str, Any]:
    return signer.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-sub",
            "Token": "tok-123",
            "TopicArn": topic,
            "Message": "You have chosen to subscribe to the topic ...",
            "SubscribeURL": local.url + "/confirm?Action=ConfirmSubscription&Token=tok-123",
            "Timestamp": sns_time(),
        },
        local.url + "/cert.pem",
    )


def test_default_config_accepts_no_topic(
    world: Config, tmp_path: Path, local_http: LocalHttp, signer: SnsSigner
) -> None:
    # GIVEN the default SNS config (topic_arns: [])
    def default_sns(data: dict[str, Any]) -> None:
        del data["webhooks"]["sns"]

    config = edit_config(write_config(tmp_path / "default.yaml"), default_sns)
    rx = Receiver(config, local_verifier(local_http))
    try:
        # WHEN a correctly signed alarm from another account's topic arrives, twice
        for _ in range(2):
            message = alarm(signer, local_http.url + "/cert.pem", OTHER_TOPIC)
            resp = rx.post("/webhooks/cloudwatch", content=json.dumps(message))
            # THEN 403 naming the setting; no certificate fetched, nothing recorded
            assert resp.status_code == 403, resp.text
            assert "webhooks.sns.topic_arns" in resp.json()["message"]
        # and a subscription confirmation is refused before its URL is visited
        resp = rx.post(
            "/webhooks/cloudwatch", content=json.dumps(subscription(signer, local_http, TOPIC))
        )
        assert resp.status_code == 403
        assert local_http.hits == []
        assert audit_count(config) == 0 and running() == "api:4"
    finally:
        rx.stop()


def test_only_configured_topics_and_their_subscriptions(
    receiver: Receiver, local_http: LocalHttp, signer: SnsSigner
) -> None:
    cert = local_http.url + "/cert.pem"
    # GIVEN topic_arns names our topic only
    # WHEN another account's topic sends a signed alarm  THEN 403
    resp = receiver.post(
        "/webhooks/cloudwatch", content=json.dumps(alarm(signer, cert, OTHER_TOPIC))
    )
    assert resp.status_code == 403
    # WHEN it asks for a subscription  THEN 403, and its SubscribeURL is never visited
    other = subscription(signer, local_http, OTHER_TOPIC)
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(other))
    assert resp.status_code == 403 and not any("/confirm" in h for h in local_http.hits)
    # WHEN our topic asks  THEN confirmed
    ours = subscription(signer, local_http, TOPIC)
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(ours))
    assert resp.status_code == 200 and resp.json()["status"] == "confirmed", resp.text
    assert any(h.startswith("/confirm?") for h in local_http.hits)
    assert audit_count(receiver.config) == 0


@pytest.mark.parametrize(
    ("seconds_ago", "message"),
    [
        (86400, "older than webhooks.sns.max_age_s (3600 s)"),
        (3700, "older than webhooks.sns.max_age_s"),
        (-3600, "in the future"),
    ],
    ids=["a-day-old", "just-stale", "future"],
)
def test_stale_or_future_messages_are_refused(
    receiver: Receiver, local_http: LocalHttp, signer: SnsSigner, seconds_ago: int, message: str
) -> None:
    # GIVEN a correctly signed alarm from our topic, stamped out of the window
    stamped = alarm(signer, local_http.url + "/cert.pem", Timestamp=sns_time(seconds_ago))
    # WHEN it arrives  THEN refused (401), nothing recorded
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(stamped))
    assert resp.status_code == 401 and message in resp.json()["message"], resp.text
    assert audit_count(receiver.config) == 0


def test_small_clock_skew_is_accepted(
    receiver: Receiver, local_http: LocalHttp, signer: SnsSigner
) -> None:
    # GIVEN a message stamped 60 s in the future (within the 300 s of skew)
    stamped = alarm(signer, local_http.url + "/cert.pem", Timestamp=sns_time(-60))
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(stamped))
    # THEN accepted
    assert resp.status_code == 202, resp.text


def test_certificate_region_must_match_the_topic(receiver: Receiver, signer: SnsSigner) -> None:
    # GIVEN the production verifier (SNS hosts only) and a message from our us-east-1
    # topic whose certificate URL is in another region
    strict = create_app(receiver.config, receiver.launcher, environ=receiver.environ)
    message = alarm(signer, "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem")
    with background_server(strict) as url:
        resp = httpx.post(url + "/webhooks/cloudwatch", content=json.dumps(message))
    # THEN refused before any certificate is fetched
    assert resp.status_code == 401
    assert "region does not match the TopicArn region" in resp.json()["message"]


CACHE_FLOOD = 2000  # unique certificate URLs (the attack used 20,000; the bound is the same)


def test_certificate_cache_is_bounded_and_stalls_stay_local(
    world: Config, local_http: LocalHttp, signer: SnsSigner
) -> None:
    verifier = local_verifier(local_http)
    rx = Receiver(world, verifier)
    url = rx.url + "/webhooks/cloudwatch"
    try:
        # GIVEN messages from our topic, each naming its own certificate URL (OK alarms:
        # verified, then ignored)
        bodies = [
            json.dumps(
                signer.sign(
                    sns_notification(sns_alarm_message("api-5xx", new="OK", old="ALARM")),
                    f"{local_http.url}/certs/{n}.pem",
                )
            )
            for n in range(CACHE_FLOOD)
        ]

        http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=300))

        def post(body: str) -> int:
            return http.post(url, content=body).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, bodies))
        # THEN every one verifies, and the certificate cache stays bounded
        assert set(statuses) == {200}
        assert verifier.cached <= rx.config.webhooks.sns.cert_cache_size  # type: ignore[union-attr]
        # GIVEN 200 messages whose certificate fetch stalls for 3 s
        stalls = [
            json.dumps(
                signer.sign(
                    sns_notification(sns_alarm_message("api-5xx", new="OK", old="ALARM")),
                    f"{local_http.url}/stall/{n}.pem",
                )
            )
            for n in range(200)
        ]
        stalled_pool = ThreadPoolExecutor(200)
        stalled = [stalled_pool.submit(post, body) for body in stalls]
        time.sleep(0.5)
        assert not any(f.done() for f in stalled)  # the fetches are stalling now
        # WHEN a legitimate GitHub webhook and a legitimate SNS alarm (cached
        # certificate) arrive meanwhile
        started = time.monotonic()
        github = rx.github(failed_run())
        sns = rx.post(
            "/webhooks/cloudwatch",
            content=json.dumps(
                signer.sign(
                    sns_notification(sns_alarm_message("api-5xx", new="OK", old="ALARM")),
                    f"{local_http.url}/certs/{CACHE_FLOOD - 1}.pem",
                )
            ),
        )
        elapsed = time.monotonic() - started
        # THEN both are answered at once, not after the stalls
        assert github.status_code == 202, github.text
        assert sns.status_code == 200, sns.text
        assert elapsed < 1.5, elapsed
        assert not all(f.done() for f in stalled)
        statuses = [f.result() for f in stalled]
        stalled_pool.shutdown()
        assert set(statuses) <= {200, 401}  # fetched in time, or timed out: never a 5xx
        http.close()
    finally:
        rx.stop()


def test_sns_verifier_is_the_strict_one_by_default() -> None:
    verifier = SnsVerifier()
    assert not verifier.url_allowed("http://127.0.0.1:9/cert.pem")
    assert verifier.region_of("https://sns.eu-west-1.amazonaws.com/x.pem") == "eu-west-1"
