"""Shared by the webhook tests: the real payload fixtures, signing, a local SNS
certificate and signer. Every secret here is generated per test run."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from deployments.signatures import github_signature, sns_string_to_sign

# CI clones the repository with shared/ beside it.
FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


@cache
def _load(name: str) -> dict[str, Any]:
    folder = "aws-events" if name.startswith("cloudwatch") else "github-webhooks"
    return json.loads((FIXTURES / folder / f"{name}.json").read_text())


def failed_run(conclusion: str = "failure", **run: Any) -> dict[str, Any]:
    """The real workflow_run.completed payload, turned into a failed deploy run."""
    payload = fixture("workflow_run.completed.payload")
    payload["workflow_run"]["conclusion"] = conclusion
    payload["workflow_run"]["event"] = "push"  # a deploy on push (the fixture: dispatch)
    payload["workflow_run"].update(run)
    return payload


def new_secret() -> str:
    return secrets.token_hex(24)


def github_headers(
    secret: str | None, body: bytes, delivery: str | None = None, event: str = "workflow_run"
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or secrets.token_hex(16),
        "Content-Type": "application/json",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = github_signature(secret, body)
    return headers


class SnsSigner:
    """A locally generated key and self-signed certificate that sign SNS messages."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.local")])
        now = datetime.now(UTC)
        self.cert_pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, message: dict[str, Any], cert_url: str, version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        return message | {"Signature": base64.b64encode(signature).decode()}


def sns_notification(
    alarm: dict[str, Any], topic: str = "arn:aws:sns:us-east-1:123456789012:alarms"
) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": secrets.token_hex(16),
        "TopicArn": topic,
        "Subject": 'ALARM: "api-5xx" in US East (N. Virginia)',
        "Message": json.dumps(alarm),
        "Timestamp": sns_time(),
    }


def sns_time(seconds_ago: float = 0) -> str:
    """An SNS ``Timestamp`` (``2024-02-17T11:53:08.431Z`` format), ``seconds_ago``."""
    stamp = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sns_alarm_message(name: str, new: str = "ALARM", old: str = "OK") -> dict[str, Any]:
    """The JSON CloudWatch puts in an SNS notification for an alarm state change."""
    return {
        "AlarmName": name,
        "AlarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        "NewStateValue": new,
        "OldStateValue": old,
        "NewStateReason": "Threshold Crossed",
        "StateChangeTime": datetime.now(UTC).isoformat(),
        "Region": "US East (N. Virginia)",
    }


def eventbridge_alarm(name: str, new: str = "ALARM", old: str = "OK") -> dict[str, Any]:
    """The EventBridge "CloudWatch Alarm State Change" event (documented shape)."""
    arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
    return {
        "version": "0",
        "id": secrets.token_hex(16),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "alarmName": name,
            "state": {
                "value": new,
                "reason": "Threshold Crossed",
                "timestamp": "2024-02-17T11:53:08.431+0000",
            },
            "previousState": {
                "value": old,
                "reason": "",
                "timestamp": "2024-02-17T11:51:31.462+0000",
            },
            "configuration": {"metrics": []},
        },
    }


def alarm_action(name: str | None = None, new: str = "ALARM", old: str = "OK") -> dict[str, Any]:
    """The real alarm-action (Lambda action) payload, for a given alarm name/state."""
    payload = fixture("cloudwatch-alarm-lambda-action")
    if name:
        payload["alarmData"]["alarmName"] = name
        payload["alarmArn"] = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
    payload["alarmData"]["state"]["value"] = new
    payload["alarmData"]["previousState"]["value"] = old
    payload["alarmData"]["state"]["timestamp"] = datetime.now(UTC).isoformat()
    return payload
