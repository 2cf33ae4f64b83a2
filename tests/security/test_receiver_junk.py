"""The receiver never answers 500 to junk: unauthenticated junk is 401, authenticated
junk 400, deep nesting is refused, an unexpected error is a JSON 500 with an error id and
one log line, and ids from outside are logged escaped (no forged log lines)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.functional.receiver_rig import Receiver, audit_count
from tests.unit.webhooks.helpers import failed_run, sns_alarm_message, sns_notification, sns_time

JUNK: list[bytes] = [
    b"",
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"null",
    b"[" * 33 + b"]" * 33,
    b'{"a":' * 40 + b"1" + b"}" * 40,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"Type": ["Notification"], "TopicArn": {}}',
    b'{"Type": "Notification", "TopicArn": 5}',
    b'{"alarmData": [], "alarmArn": {}}',
    b'{"detail-type": "CloudWatch Alarm State Change", "resources": 5, "detail": []}',
    b"1" * 5000,
]


def test_unauthenticated_junk_is_401_never_500(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="deployments")
    # GIVEN thousands of junk bodies without any credential
    bodies = [JUNK[n % len(JUNK)] for n in range(2000)]
    http = httpx.Client(base_url=receiver.url, timeout=30)

    def post(body: bytes) -> tuple[int, dict[str, object]]:
        resp = http.post("/webhooks/cloudwatch", content=body)
        return resp.status_code, resp.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, bodies))
    http.close()
    # THEN every one is a JSON 401, no traceback anywhere, and the log stays small
    assert {status for status, _ in answers} == {401}
    assert all(body["status"] == "error" for _, body in answers)
    err = capfd.readouterr().err
    assert "Traceback" not in caplog.text and "Traceback" not in err
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("deployments", "uvicorn"))]
    assert sum(len(m) for m in ours) < 5_000 and len(err) < 20_000
    assert audit_count(receiver.config) == 0


@pytest.mark.parametrize("body", JUNK, ids=range(len(JUNK)))
def test_authenticated_junk_is_400(receiver: Receiver, body: bytes) -> None:
    # GIVEN a junk body with the right credential, on each entrance
    cloudwatch = receiver.post(
        "/webhooks/cloudwatch", content=body, headers=receiver.alarm_bearer()
    )
    github = receiver.github(body)
    api = receiver.post("/rollback", content=body, headers=receiver.bearer())
    # THEN 400 (or 200 ignored for a GitHub object that asks for nothing), never 5xx
    for resp in (cloudwatch, github, api):
        assert resp.status_code in (400, 200), (body[:40], resp.text)
        assert resp.status_code == 400 or resp.json()["status"] == "ignored"


def test_deep_nesting_is_refused_by_name(receiver: Receiver) -> None:
    # GIVEN a signed GitHub body nested 33 levels deep (the limit is 32)
    deep = failed_run()
    node = deep
    for _ in range(33):
        node["x"] = {}
        node = node["x"]
    resp = receiver.github(deep)
    assert resp.status_code == 400 and "deeper than 32" in resp.json()["message"]
    # and 32 levels is still a payload
    ok = failed_run(conclusion="success")
    node = ok
    for _ in range(30):
        node["x"] = {}
        node = node["x"]
    assert receiver.github(ok).status_code == 200


def test_unexpected_error_is_a_json_500_with_an_id(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a launcher that fails in a way nobody planned for
    def broken(*args: object) -> None:
        raise RuntimeError("boom: internal detail")

    receiver.launcher.start = broken  # type: ignore[method-assign]
    # WHEN a valid webhook arrives
    resp = receiver.github(failed_run())
    # THEN JSON 500 naming an error id, nothing of the detail
    assert resp.status_code == 500
    body = resp.json()
    assert body["status"] == "error" and body["message"].startswith("internal error ")
    assert "boom" not in resp.text
    error_id = body["message"].rsplit(" ", 1)[-1]
    # and exactly one log line carries that id, without a traceback
    lines = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert "Traceback" not in caplog.text and "Traceback" not in capfd.readouterr().err


def test_ids_from_outside_are_logged_escaped(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # GIVEN an unsigned SNS message whose MessageId carries a forged log line
    forged = "m-1\n2024-01-01 INFO rollback approved by admin"
    message = sns_notification(sns_alarm_message("api-5xx")) | {
        "MessageId": forged,
        "Timestamp": sns_time(),
        "TopicArn": "arn:aws:sns:us-east-1:999999999999:x\r\nFAKE",
    }
    resp = receiver.post("/webhooks/cloudwatch", content=json.dumps(message))
    assert resp.status_code == 403
    # and a signed GitHub run whose workflow name carries one too
    resp = receiver.github(failed_run(name="deploy\nFAKE: approved", event="pull_request"))
    assert resp.status_code == 200
    # THEN no log record contains a raw line break from outside
    messages = [r.getMessage() for r in caplog.records]
    assert any("m-1\\n2024" in m for m in messages), messages
    assert not any("\n" in m or "\r" in m for m in messages)
