"""A small HTTP proxy in front of the moto server that answers 500 instead of
forwarding for chosen request numbers: transient AWS faults, injected over the network."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultStats:
    def __init__(self) -> None:
        self.count = 0
        self.injected = 0
        self.forwarded: list[str] = []  # X-Amz-Target of each forwarded request
        self.lock = threading.Lock()


@contextmanager
def faulty_proxy(
    upstream: str,
    fail: Callable[[int], bool],
    fault: tuple[int, bytes] = (500, b'{"__type": "InternalFailure", "message": "injected fault"}'),
    stall: Callable[[str, FaultStats], bool] | None = None,
) -> Iterator[tuple[str, FaultStats]]:
    """``fault`` is the (status, JSON body) answered instead of forwarding, e.g.
    ``(400, b'{"__type": "ThrottlingException"}')`` for DynamoDB throttling.
    ``stall(target, stats)`` true holds that request unanswered until the proxy closes
    (a platform that never answers: the caller stays where it is)."""
    stats = FaultStats()
    closing = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            with stats.lock:
                stats.count += 1
                n = stats.count
            target = self.headers.get("X-Amz-Target", self.path)
            if stall is not None and stall(target, stats):
                closing.wait()
                return
            if fail(n):
                with stats.lock:
                    stats.injected += 1
                status, payload = fault
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            req = urllib.request.Request(
                upstream + self.path, data=body or None, headers=headers, method=self.command
            )
            with stats.lock:
                stats.forwarded.append(self.headers.get("X-Amz-Target", self.path))
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, data, rheaders = resp.status, resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                status, data, rheaders = exc.code, exc.read(), exc.headers
            self.send_response(status)
            for key, value in rheaders.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stats
    finally:
        closing.set()
        server.shutdown()
        server.server_close()
