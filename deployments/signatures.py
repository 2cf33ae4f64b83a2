"""Who may start a rollback over HTTP: GitHub's HMAC signature, the bearer token, and
the SNS message signature (checked with the certificate, fetched only from SNS hosts).

Every comparison of a secret is constant-time; no secret is ever logged or returned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_github(secret: str | None, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the HMAC-SHA256 of ``body`` with ``secret`` (constant time).
    No secret configured: nothing verifies (fail closed)."""
    if not secret or not header:
        return False
    return hmac.compare_digest(github_signature(secret, body).encode(), header.strip().encode())


def verify_bearer(token: str | None, header: str | None) -> bool:
    """True when ``header`` is ``Bearer <token>`` (constant time; no token: never)."""
    if not token or not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.encode(), given.strip().encode())


# -- SNS ----------------------------------------------------------------------------------
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_KEYS["UnsubscribeConfirmation"] = _SIGNED_KEYS["SubscriptionConfirmation"]


def sns_url_allowed(url: str) -> bool:
    """Only https URLs on ``sns.<region>.amazonaws.com`` (certificates, subscribe URLs)."""
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and bool(SNS_HOST.match(parts.hostname or ""))
        and not (parts.username or parts.password or parts.port not in (None, 443))
    )


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical text SNS signs: ``key\\nvalue\\n`` for the keys of the type, sorted,
    skipping absent optional ones (Subject)."""
    keys = _SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise ValueError(f"unknown SNS message type {message.get('Type')!r}")
    out = []
    for key in keys:
        if key in message and message[key] is not None:
            out.append(f"{key}\n{message[key]}\n")
        elif key != "Subject":
            raise ValueError(f"SNS message lacks {key}")
    return "".join(out).encode()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - URL checked first
        return bytes(resp.read(64 * 1024))


class SnsVerifier:
    """Checks SNS message signatures. ``url_allowed`` decides which certificate URLs may
    be fetched (default: SNS hosts only); tests inject a looser check for a local server."""

    def __init__(
        self,
        url_allowed: Callable[[str], bool] = sns_url_allowed,
        fetch: Callable[[str], bytes] = _fetch,
    ) -> None:
        self.url_allowed = url_allowed
        self._fetch = fetch
        self._certs: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cert = self._certs.get(url)
        if cert is None:
            cert = x509.load_pem_x509_certificate(self._fetch(url))
            with self._lock:
                self._certs[url] = cert
        return cert

    def confirm(self, subscribe_url: str) -> None:
        """Confirm an SNS subscription by visiting its SubscribeURL (checked first)."""
        if not self.url_allowed(subscribe_url):
            raise ValueError("SubscribeURL is not an SNS host")
        self._fetch(subscribe_url)

    def verify(self, message: Mapping[str, Any]) -> tuple[bool, str]:
        """(valid, why not). Never raises for bad input."""
        url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
        if not url or not self.url_allowed(url):
            return False, "signing certificate URL is not an SNS host"
        version = str(message.get("SignatureVersion", "1"))
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            return False, f"unsupported SignatureVersion {version!r}"
        try:
            data = sns_string_to_sign(message)
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except ValueError as exc:
            return False, str(exc)
        try:
            key = self.certificate(url).public_key()
        except (OSError, ValueError) as exc:
            log.warning("cannot load SNS certificate %s: %s", url, type(exc).__name__)
            return False, "signing certificate could not be loaded"
        if not isinstance(key, rsa.RSAPublicKey):
            return False, "signing certificate has no RSA key"
        try:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            return False, "SNS signature does not match"
        return True, ""
