"""The long-lived ``rollback worker`` processes (automatic rollbacks, health guard)."""

from __future__ import annotations

import time
from pathlib import Path

from devstack.stack.api import call
from devstack.stack.errors import StackError
from devstack.stack.options import Options
from devstack.stack.state import Stack


def start_rollback_workers(stack: Stack, opts: Options) -> None:
    """The long-lived workers run the health guard's ticks: the every-minute deployment
    would guard twice, so its schedule is paused (nothing is lost: same flow)."""
    limit = ["--limit", str(opts.worker_limit)] if opts.worker_limit else []
    for i in range(1, opts.rollback_workers + 1):
        stack.start_rollback_worker(i, limit)
    _pause_health_guard_deployment(stack.api_url)
    wait_rollback_workers(stack, opts.rollback_workers)


def _pause_health_guard_deployment(api_url: str) -> None:
    query = {"deployments": {"name": {"any_": ["health-guard"]}}}
    for guard in call(api_url, "POST", "/deployments/filter", query) or []:
        for attempt in range(5):  # a busy server answers 503 for a moment
            try:
                call(api_url, "PATCH", f"/deployments/{guard['id']}", {"paused": True})
                break
            except StackError:
                if attempt == 4:
                    raise
                time.sleep(1 + attempt)


def wait_rollback_workers(stack: Stack, count: int, timeout: float = 60) -> None:
    """Until ``count`` of the stack's ``rollback worker`` processes listen to the
    server's event stream (each says so, with its pid, on its log once it listens and
    has swept what was waiting)."""
    from flows.background import LISTENING

    deadline = time.monotonic() + timeout
    while True:
        workers = [p for p in stack.procs if p.name.startswith("rollback-worker-")]
        listening = sum(1 for p in workers if f"{LISTENING} (pid {p.pid}," in _text(p.log))
        if listening >= count:
            return
        if time.monotonic() > deadline:
            raise StackError(f"{count} rollback worker(s) not listening after {timeout:.0f}s")
        time.sleep(0.2)


def _text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
