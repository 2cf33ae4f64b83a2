"""One call to the Prefect server's REST API (JSON in, JSON out)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from devstack.stack.errors import StackError


def call(api_url: str, method: str, path: str, body: Any, ok_conflict: bool = False) -> Any | None:
    """The decoded answer; None for a 409 when ``ok_conflict``; StackError otherwise."""
    request = urllib.request.Request(
        api_url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            text = resp.read()
    except urllib.error.HTTPError as exc:
        if ok_conflict and exc.code == 409:
            return None
        raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    return json.loads(text) if text else {}
