"""Pure pieces of the receiver: SNS envelope checks, JSON depth, log escaping,
idempotency fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deployments.receiver.bodies import parse_json, within_depth
from deployments.receiver.errors import Refused
from deployments.signatures import arn_region, sns_envelope, sns_envelope_refusal, sns_region
from flows.launch import fingerprint, fingerprint_mismatch, printable
from rollback.models import RollbackRequest

TOPIC = "arn:aws:sns:us-east-1:123456789012:alarms"
NOW = datetime(2024, 2, 17, 12, 0, tzinfo=UTC)


def envelope(**fields: str) -> dict[str, str]:
    return {
        "Type": "Notification",
        "TopicArn": TOPIC,
        "Timestamp": "2024-02-17T11:53:08.431Z",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
    } | fields


@pytest.mark.parametrize(
    ("message", "topics", "expected"),
    [
        (envelope(), [TOPIC], None),
        (envelope(), [], (403, "webhooks.sns.topic_arns")),
        (envelope(TopicArn="arn:aws:sns:us-east-1:999:x"), [TOPIC], (403, "topic_arns")),
        (envelope(Timestamp="2024-02-17T10:59:00Z"), [TOPIC], (401, "older than")),
        (envelope(Timestamp="2024-02-17T12:06:00Z"), [TOPIC], (401, "in the future")),
        (envelope(Timestamp="yesterday"), [TOPIC], (401, "no valid Timestamp")),
        (
            envelope(SigningCertURL="https://sns.eu-west-1.amazonaws.com/x.pem"),
            [TOPIC],
            (401, "region does not match"),
        ),
        (envelope(SigningCertURL="https://evil.example/x.pem"), [TOPIC], (401, "not an SNS")),
    ],
)
def test_sns_envelope_refusal(
    message: dict[str, str], topics: list[str], expected: tuple[int, str] | None
) -> None:
    got = sns_envelope_refusal(message, topics, NOW, 3600, 300)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got[0] == expected[0] and expected[1] in got[1]


def test_regions_and_envelope_shape() -> None:
    assert sns_region("https://sns.cn-north-1.amazonaws.com.cn/x.pem") == "cn-north-1"
    assert sns_region("https://evil.example/x.pem") is None
    assert arn_region(TOPIC) == "us-east-1" and arn_region("nope") is None
    assert sns_envelope(envelope()) is not None
    assert sns_envelope(envelope() | {"TopicArn": 5}) is None  # type: ignore[operator]
    assert sns_envelope({"Type": "Other", "TopicArn": TOPIC}) is None
    assert sns_envelope([1]) is None


def test_json_depth_and_junk() -> None:
    assert within_depth([[[]]], 3) and not within_depth([[[[]]]], 3)
    assert within_depth({"a": [{"b": 1}]}, 3) and within_depth(5)
    for body, message in [
        (b"[" * 50_000 + b"]" * 50_000, "deeper than 32"),
        (b"[" * 33 + b"]" * 33, "deeper than 32"),
        (b"{x", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
    ]:
        with pytest.raises(Refused, match=message):
            parse_json(body)
    assert parse_json(b"[1]", require_object=False) == [1]


def test_printable_escapes_line_breaks() -> None:
    assert printable("d-1") == "d-1"
    assert printable("a\nFAKE\r\x1b[31m") == "a\\nFAKE\\r\\x1b[31m"
    assert len(printable("x" * 500)) == 200


def test_fingerprint_names_the_fields_that_differ() -> None:
    one = RollbackRequest(environment="prod", service="api", reason="r", requested_by="a")
    two = one.model_copy(update={"to": "v1", "requested_by": "b"})
    assert fingerprint_mismatch(fingerprint(one), fingerprint(one)) == []
    assert fingerprint_mismatch(fingerprint(one), fingerprint(two)) == ["to", "requested_by"]
    assert fingerprint_mismatch(None, fingerprint(two)) == []
    assert "prod" not in fingerprint(one)  # hashes, not text


def test_timestamp_edges() -> None:
    fresh = (NOW - timedelta(seconds=3599)).isoformat()
    assert sns_envelope_refusal(envelope(Timestamp=fresh), [TOPIC], NOW, 3600, 300) is None
