"""boto3 clients and error translation, shared by every AWS adapter.

Region and endpoint come from the standard AWS environment (AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL, profiles) or a named prefect-aws AwsCredentials block: no endpoint
plumbing of our own. Clients are built lazily, never at import time.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from rollback.errors import NotFoundError, RollbackError, TargetError, TransientError

_BOTO_CONFIG = BotoConfig(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
)

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)


@functools.cache
def _session(credentials_block: str | None) -> Any:
    if credentials_block:
        from prefect_aws import AwsCredentials  # optional dependency

        return AwsCredentials.load(credentials_block).get_boto3_session()
    return boto3.session.Session()


def client(service: str, credentials_block: str | None = None) -> Any:
    """A boto3 client with bounded retries; region defaults to us-east-1 if unset."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    session = _session(credentials_block)
    return session.client(
        service, region_name=region or session.region_name or "us-east-1", config=_BOTO_CONFIG
    )


class AwsAdapter:
    """Base of a one-service adapter: the boto3 client is injected, or built on first
    use (never at import time)."""

    service: str = ""

    def __init__(self, client: Any = None, credentials_block: str | None = None) -> None:
        self._client = client
        self._credentials_block = credentials_block

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client(self.service, self._credentials_block)
        return self._client


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: throttling, 5xx, timeouts, dropped connections."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, RollbackError):
        return False
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(
        exc,
        EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | ConnectTimeoutError,
    )


def translate(exc: Exception, what: str, not_found: tuple[str, ...] = ()) -> RollbackError:
    """Our error for a boto3 failure: transient, not found, or a plain target error."""
    code = error_code(exc)
    if is_transient(exc):
        return TransientError(f"{what}: transient AWS fault ({code or type(exc).__name__}): {exc}")
    if code and code in not_found:
        return NotFoundError(f"{what}: {exc}")
    if isinstance(exc, ClientError | BotoCoreError):
        return TargetError(f"{what}: {exc}")
    return TargetError(f"{what}: {type(exc).__name__}: {exc}")
