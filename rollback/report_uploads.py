"""Report files under an S3 prefix: the adapter the reports upload through."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws
from rollback.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputFile:
    """One report file: its name, its bytes and their content type."""

    name: str
    body: bytes
    content_type: str


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise ConfigError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3Output(aws.AwsAdapter):
    """Puts report files under one S3 prefix."""

    service = "s3"

    def __init__(self, url: str, client: Any = None, credentials_block: str | None = None):
        super().__init__(client, credentials_block)
        self.bucket, self.prefix = split_s3_url(url)

    def put(self, file: OutputFile) -> str:
        key = self.prefix + file.name
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=file.body, ContentType=file.content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, f"upload s3://{self.bucket}/{key}") from exc
        log.info("uploaded s3://%s/%s", self.bucket, key)
        return f"s3://{self.bucket}/{key}"
