"""A long-lived command's wait ends on Ctrl-C, SIGTERM or its own stop, and gives the
signals' handlers back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from rollback.stopping import wait_for_stop


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "set"])
def test_the_wait_ends_and_the_handlers_come_back(how: str) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = threading.Event()
    if how == "set":
        threading.Timer(0.1, stop.set).start()
    else:
        threading.Timer(0.1, os.kill, (os.getpid(), getattr(signal, how))).start()
    wait_for_stop(stop)
    assert stop.is_set()
    assert {s: signal.getsignal(s) for s in before} == before
