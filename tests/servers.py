"""Helpers for the real local stand-ins the tests start (the moto server itself is
``devstack.sandbox.moto_server``, the same one the demo uses)."""

from __future__ import annotations

import time
import urllib.request

import httpx

from devstack.sandbox import free_port

__all__ = ["BusyRetry", "answers", "free_port", "reset_moto", "wait_http"]


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


def answers(url: str) -> bool:
    """Does ``url`` answer 200 now (within a second)?"""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"))


class BusyRetry(httpx.HTTPTransport):
    """A busy SQLite Prefect server answers 503 for a moment, or a read stalls while it
    starts several runs at once; Prefect's own client (and the UI) retry that, so the
    tests' client does too (reads only after a timeout: a GET is safe to repeat)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(6):
            try:
                response = super().handle_request(request)
            except httpx.ReadTimeout:
                if request.method != "GET" or attempt == 5:
                    raise
                continue
            if response.status_code not in (429, 503):
                return response
            response.read()
            response.close()
            time.sleep(0.25 * 2**attempt)
        return response
