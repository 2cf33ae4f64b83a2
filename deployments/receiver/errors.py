"""How the receiver says no: JSON refusals, 503 with ``Retry-After`` when the stores are
not available, and one catch-all that turns an unexpected error into
``{"status": "error", "message": "internal error <id>"}`` plus one log line with that id
(never a traceback in a response, never a traceback per junk request in the log)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.launch import printable
from rollback.models import new_id

log = logging.getLogger("deployments.receiver")

RETRY_AFTER_S = 5


class Refused(Exception):
    """A request answered with an error status and a message (no traceback, no log)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def unavailable(message: str) -> Refused:
    """503: the stores cannot take the request now; the caller retries later."""
    return Refused(503, message, {"Retry-After": str(RETRY_AFTER_S)})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "message": message}, status_code=status, headers=headers
    )


class CatchInternalErrors:
    """ASGI middleware: an exception no handler answered becomes a JSON 500 naming an
    error id, and one log line with the same id (the details at DEBUG)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - the one place that catches everything
            error_id = new_id()[:12]
            log.error(
                "internal error %s on %s %s: %s",
                error_id,
                scope.get("method"),
                printable(scope.get("path", ""), 100),
                type(exc).__name__,
            )
            log.debug("internal error %s", error_id, exc_info=True)
            if not started:
                await error(500, f"internal error {error_id}")(scope, receive, send)


class RefusalLog:
    """Warnings about refused requests, at most one per ``every_s`` with a count of the
    ones in between: a flood of forged requests must not become a flood of log lines.
    Arguments are text from outside: each is escaped onto one line."""

    def __init__(self, every_s: float = 10) -> None:
        self.every_s = every_s
        self._last = -every_s
        self._skipped = 0

    def note(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._skipped += 1
            return
        skipped, self._skipped, self._last = self._skipped, 0, now
        suffix = f" (and {skipped} more refused since the last warning)" if skipped else ""
        log.warning(message + suffix, *(printable(a) for a in args))
