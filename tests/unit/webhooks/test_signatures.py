"""Signatures: GitHub HMAC, bearer token, SNS (local key and certificate)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.signatures import (
    SnsVerifier,
    github_signature,
    sns_url_allowed,
    verify_bearer,
    verify_github,
)
from tests.unit.webhooks.helpers import SnsSigner, new_secret, sns_alarm_message, sns_notification

BODY = b'{"action": "completed"}'


def test_github_signature_roundtrip_and_refusals() -> None:
    secret = new_secret()
    good = github_signature(secret, BODY)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify_github(secret, BODY, good)
    assert verify_github(secret, BODY, f"  {good} ")
    assert not verify_github(secret, BODY + b" ", good)  # body changed
    assert not verify_github(new_secret(), BODY, good)  # other secret
    assert not verify_github(secret, BODY, None)  # no header
    assert not verify_github(secret, BODY, good.replace("sha256=", "sha1="))
    assert not verify_github(None, BODY, good)  # no secret configured: fail closed
    assert not verify_github("", BODY, github_signature("", BODY))


def test_bearer_token() -> None:
    token = new_secret()
    assert verify_bearer(token, f"Bearer {token}")
    assert verify_bearer(token, f"bearer {token}")
    assert not verify_bearer(token, token)
    assert not verify_bearer(token, f"Basic {token}")
    assert not verify_bearer(token, f"Bearer {token}x")
    assert not verify_bearer(None, "Bearer ")
    assert not verify_bearer("", "Bearer ")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("http://sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/cert.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/cert.pem", False),
        ("https://s3.amazonaws.com/cert.pem", False),
        ("file:///etc/passwd", False),
        ("", False),
    ],
)
def test_sns_certificate_hosts(url: str, allowed: bool) -> None:
    assert sns_url_allowed(url) is allowed


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return SnsSigner()


CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


def verifier_for(signer: SnsSigner) -> SnsVerifier:
    fetched: list[str] = []

    async def fetch(url: str, timeout_s: float) -> bytes:
        fetched.append(url)
        return signer.cert_pem

    verifier = SnsVerifier(fetch=fetch)
    verifier.fetched = fetched  # type: ignore[attr-defined]
    return verifier


def verify(verifier: SnsVerifier, message: dict[str, Any]) -> tuple[bool, str]:
    return asyncio.run(verifier.verify(message))


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_good_and_bad(signer: SnsSigner, version: str) -> None:
    verifier = verifier_for(signer)
    message = signer.sign(sns_notification(sns_alarm_message("api-5xx")), CERT_URL, version)
    assert verify(verifier, message) == (True, "")
    assert verify(verifier, message | {"Message": "{}"})[0] is False
    assert verify(verifier, message | {"Subject": "other"})[0] is False
    assert verify(verifier, message | {"Signature": "not base64!"})[0] is False
    forged = SnsSigner().sign(sns_notification(sns_alarm_message("api-5xx")), CERT_URL, version)
    assert verify(verifier, forged) == (False, "SNS signature does not match")
    assert verifier.fetched == [CERT_URL]  # type: ignore[attr-defined] # cached


def test_sns_certificate_url_checked_before_any_fetch(signer: SnsSigner) -> None:
    verifier = verifier_for(signer)
    message = signer.sign(sns_notification({}), "https://evil.example/cert.pem")
    assert verify(verifier, message) == (False, "signing certificate URL is not an SNS host")
    assert verifier.fetched == []  # type: ignore[attr-defined]
    assert (
        verify(verifier, message | {"SignatureVersion": "3", "SigningCertURL": CERT_URL})[0]
        is False
    )
    with pytest.raises(ValueError):
        asyncio.run(verifier.confirm("https://evil.example/confirm"))


def test_sns_message_without_subject_verifies(signer: SnsSigner) -> None:
    message = sns_notification(sns_alarm_message("api-5xx"))
    del message["Subject"]
    assert verify(verifier_for(signer), signer.sign(message, CERT_URL))[0]
