"""Who may start a rollback over HTTP: GitHub's HMAC signature, the bearer token, and
the SNS message signature (checked with the certificate, fetched only from SNS hosts).

Every comparison of a secret is constant-time; no secret is ever logged or returned.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
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


async def _fetch(url: str, timeout_s: float) -> bytes:
    """GET ``url`` (at most 64 KiB) within ``timeout_s`` in total: an async request, so a
    stalled server holds no worker thread and delays only the request that waits on it."""
    import httpx

    async def get() -> bytes:
        async with (
            httpx.AsyncClient(
                timeout=timeout_s, follow_redirects=False, verify=_tls_context()
            ) as client,
            client.stream("GET", url) as resp,
        ):
            resp.raise_for_status()
            data = b""
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > 64 * 1024:
                    raise ValueError("certificate over 64 KiB")
            return data

    try:
        return await asyncio.wait_for(get(), timeout_s)
    except (httpx.HTTPError, TimeoutError) as exc:
        raise OSError(f"fetch failed: {type(exc).__name__}") from None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every fetch (building one costs milliseconds of CPU)."""
    return ssl.create_default_context()


def sns_region(url: str) -> str | None:
    """The region of an SNS certificate URL (``sns.<region>.amazonaws.com``)."""
    host = urlsplit(url).hostname or ""
    match = SNS_HOST.match(host)
    return host.split(".")[1] if match else None


def arn_region(arn: str) -> str | None:
    """The region field of an ARN (``arn:aws:sns:<region>:<account>:<name>``)."""
    parts = arn.split(":")
    return parts[3] if len(parts) >= 6 and parts[0] == "arn" else None


SNS_ENVELOPE_KEYS = (
    "Type",
    "MessageId",
    "TopicArn",
    "Timestamp",
    "Message",
    "Subject",
    "Token",
    "SubscribeURL",
    "Signature",
    "SignatureVersion",
    "SigningCertURL",
)


def sns_envelope(payload: Any) -> dict[str, str] | None:
    """The SNS envelope fields of ``payload`` when it looks like an SNS message (a JSON
    object with a known Type, a TopicArn, and every envelope field a string), else None."""
    if not isinstance(payload, Mapping):
        return None
    if "SigningCertUrl" in payload and "SigningCertURL" not in payload:
        payload = {**payload, "SigningCertURL": payload["SigningCertUrl"]}
    out: dict[str, str] = {}
    for key in SNS_ENVELOPE_KEYS:
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return None
        out[key] = value
    if out.get("Type") not in _SIGNED_KEYS or "TopicArn" not in out:
        return None
    return out


def sns_envelope_refusal(
    message: Mapping[str, str],
    topics: Iterable[str],
    now: datetime,
    max_age_s: float,
    clock_skew_s: float,
    region_of: Callable[[str], str | None] = sns_region,
) -> tuple[int, str] | None:
    """Why an SNS envelope is refused before any signature work — (HTTP status, message)
    — or None. An empty ``topics`` accepts no topic."""
    topic = message.get("TopicArn", "")
    if topic not in set(topics):
        return 403, "SNS topic is not accepted by this receiver (webhooks.sns.topic_arns)"
    stamp = _parse_time(message.get("Timestamp"))
    if stamp is None:
        return 401, "SNS message has no valid Timestamp"
    age = (now - stamp).total_seconds()
    if age > max_age_s:
        return 401, f"SNS message is older than webhooks.sns.max_age_s ({max_age_s:g} s)"
    if -age > clock_skew_s:
        return 401, f"SNS message Timestamp is in the future (beyond {clock_skew_s:g} s of skew)"
    cert_region = region_of(message.get("SigningCertURL", ""))
    if cert_region is None:
        return 401, "SNS signature not verified: signing certificate URL is not an SNS host"
    if cert_region != arn_region(topic):
        return 401, "SNS SigningCertURL region does not match the TopicArn region"
    return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


Fetch = Callable[[str, float], Awaitable[bytes]]


class SnsVerifier:
    """Checks SNS message signatures. ``url_allowed`` decides which certificate URLs may
    be fetched (default: SNS hosts only) and ``region_of`` reads a certificate URL's
    region; tests inject looser ones for a local server.

    Certificates are kept in a bounded LRU cache; concurrent requests for one URL share
    one fetch; a fetch is async with a total timeout, so it never holds a worker thread."""

    def __init__(
        self,
        url_allowed: Callable[[str], bool] = sns_url_allowed,
        fetch: Fetch = _fetch,
        region_of: Callable[[str], str | None] = sns_region,
        cache_size: int = 64,
        timeout_s: float = 3,
    ) -> None:
        self.url_allowed = url_allowed
        self.region_of = region_of
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._pending: dict[str, asyncio.Future[x509.Certificate]] = {}

    def configure(self, cache_size: int, timeout_s: float) -> None:
        """Apply the config's cache size and fetch timeout (the receiver calls this)."""
        self.cache_size, self.timeout_s = cache_size, timeout_s

    @property
    def cached(self) -> int:
        return len(self._certs)

    async def certificate(self, url: str) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is not None:
            self._certs.move_to_end(url)
            return cert
        pending = self._pending.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[x509.Certificate] = asyncio.get_running_loop().create_future()
        self._pending[url] = future
        try:
            cert = x509.load_pem_x509_certificate(await self._fetch(url, self.timeout_s))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._pending.pop(url, None)
        future.set_result(cert)
        self._certs[url] = cert
        while len(self._certs) > self.cache_size:
            self._certs.popitem(last=False)
        return cert

    async def confirm(self, subscribe_url: str) -> None:
        """Confirm an SNS subscription by visiting its SubscribeURL (checked first)."""
        if not self.url_allowed(subscribe_url):
            raise ValueError("SubscribeURL is not an SNS host")
        await self._fetch(subscribe_url, self.timeout_s)

    async def verify(self, message: Mapping[str, Any]) -> tuple[bool, str]:
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
            key = (await self.certificate(url)).public_key()
        except (OSError, ValueError) as exc:
            log.debug("cannot load an SNS certificate: %s", type(exc).__name__)
            return False, "signing certificate could not be loaded"
        if not isinstance(key, rsa.RSAPublicKey):
            return False, "signing certificate has no RSA key"
        try:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            return False, "SNS signature does not match"
        return True, ""
