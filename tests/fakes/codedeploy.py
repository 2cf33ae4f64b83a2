"""moto's CodeDeploy served from this process, so tests can play the CodeDeploy agent.

moto implements create/get/list deployments but a deployment stays "Created" forever.
This stand-in is the real moto HTTP server (ThreadedMotoServer on 127.0.0.1); the only
extra is ``set_status``/``Agent``, which move a deployment's status the way CodeDeploy
itself would, by writing to moto's in-process backend.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.codedeploy.models import codedeploy_backends
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"
REGION = "us-east-1"


class CodeDeployStandIn:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req).close()

    @property
    def _deployments(self) -> dict[str, Any]:
        return codedeploy_backends[ACCOUNT][REGION].deployments

    def status(self, deployment_id: str) -> str:
        return str(self._deployments[deployment_id].status)

    def set_status(self, deployment_id: str, status: str) -> None:
        self._deployments[deployment_id].status = status

    def ids(self) -> set[str]:
        return set(self._deployments)

    @contextmanager
    def agent(self, status: str = "Succeeded", after_s: float = 0.2) -> Iterator[None]:
        """While open, every deployment created from now on ends with ``status`` about
        ``after_s`` seconds after it appears (the CodeDeploy agent's part)."""
        known = self.ids()
        seen: dict[str, float] = {}
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(0.02):
                now = time.monotonic()
                for did in self.ids() - known:
                    first = seen.setdefault(did, now)
                    if now - first >= after_s and self.status(did) == "Created":
                        self.set_status(did, status)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
