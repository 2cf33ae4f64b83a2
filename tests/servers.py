"""Helpers for the real local stand-ins the tests start (the moto server itself is
``devstack.sandbox.moto_server``, the same one the demo uses)."""

from __future__ import annotations

import time
import urllib.request

from devstack.sandbox import free_port

__all__ = ["free_port", "reset_moto", "wait_http"]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.05)


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"))
