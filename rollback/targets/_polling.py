"""The one poll loop every target's ``stabilize`` uses: ask, say what it waits for,
stop when done, failed or out of time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from rollback.models import StabilizeResult

State = Literal["waiting", "done", "failed"]


def poll_until(
    poll: Callable[[], tuple[State, str]],
    *,
    timeout_s: float,
    interval_s: float,
    progress: Callable[[str], None],
    gave_up: str = "not done",
) -> StabilizeResult:
    """Call ``poll`` every ``interval_s`` until it answers done or failed, or until
    ``timeout_s`` would pass; each answer is one progress line ("poll N: ...")."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        polls += 1
        state, line = poll()
        progress(f"poll {polls}: {line}")
        if state != "waiting":
            return StabilizeResult(state == "done", line, polls)
        if time.monotonic() + interval_s > deadline:
            return StabilizeResult(False, f"{gave_up} after {timeout_s:.0f}s: {line}", polls)
        time.sleep(interval_s)
