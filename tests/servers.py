"""Real local stand-ins started by the tests: a moto server (AWS) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@contextmanager
def moto_server(running_tasks: int = 1) -> Iterator[str]:
    """A moto server subprocess; yields its endpoint URL. ECS services report
    ``running_tasks`` running tasks (a desiredCount above it never stabilizes)."""
    port = free_port()
    env = {**os.environ, "MOTO_ECS_SERVICE_RUNNING": str(running_tasks)}
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/moto-api/")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"))
