"""Slack incoming webhooks. The URL is a secret: it comes from an environment variable
or a Prefect Secret block, is never logged, and never appears in an error message."""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from rollback.errors import TransientError

log = logging.getLogger(__name__)


def slack_url(cfg: Any) -> str | None:
    """The webhook URL from the configured Secret block or environment variable."""
    if cfg.secret_block:
        from prefect.blocks.system import Secret

        secret: Any = Secret.load(cfg.secret_block)  # sync here: no event loop runs
        return str(secret.get())
    return os.environ.get(cfg.webhook_env) or None


class SlackNotifier:
    def __init__(self, url: str, timeout_s: float = 5) -> None:
        self._url = url
        self._timeout = timeout_s

    def __repr__(self) -> str:  # never show the URL
        return "SlackNotifier(url=<secret>)"

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        req = urllib.request.Request(
            self._url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            # The message names the status, never the URL.
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"Slack answered HTTP {exc.code}") from None
            log.warning("Slack refused the message: HTTP %s", exc.code)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"Slack unreachable: {type(reason).__name__}") from None
