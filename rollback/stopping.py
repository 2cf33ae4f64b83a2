"""Waiting for a long-lived command's end: Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading


def wait_for_stop(stop: threading.Event) -> None:
    """Block until ``stop`` is set, by another thread or by Ctrl-C or SIGTERM (each sets
    it). Both signals are taken for the wait even when the process started with SIGINT
    ignored (a shell's background job), so a caller's cleanup runs either way (a plain
    `kill` used to end the sandbox without stopping its moto server); the previous
    handlers come back after. Main thread only, as Python's signal handlers."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        while not stop.wait(1):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
