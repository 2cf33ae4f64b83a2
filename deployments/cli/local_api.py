"""The temporary Prefect API server of a CLI process dies with that process.

Without ``PREFECT_API_URL``, Prefect 3 starts a temporary API server on first use
(``SubprocessASGIServer``: ``python -m uvicorn ... prefect.server.api.server:create_app``,
~200 MB) and stops it from an ``atexit`` hook. A process killed by a signal (SIGKILL,
and SIGTERM too, whose default action skips ``atexit``) runs no hook: the server lived
on as an orphan.

``tie_temporary_api()`` starts that server now, through Prefect's own class (same
command, port choice, health wait and ``atexit`` stop), with one difference: the child
asks the kernel for ``PR_SET_PDEATHSIG`` = SIGKILL before it executes, so whatever way
this process ends, the kernel kills the server. Why this way:

- the kernel does it: no watchdog thread or process to die first, no pid file, and it
  covers SIGKILL, which no handler in this process can;
- Prefect keeps its own view of the server (``ServerType.EPHEMERAL``, its ``atexit``
  stop): ``PREFECT_API_URL`` stays unset, so nothing that reads it (``serve``'s mode
  choice, flow-run links to a UI that would not exist) changes meaning;
- SIGKILL rather than SIGTERM: the server holds nothing that needs a graceful end (its
  SQLite database is transactional) and it must never outlive us by a slow shutdown.

The death signal belongs to the *thread* that forked, so the server is started here,
from the main thread, before any worker thread could be the first to ask Prefect for
a client. Linux only; elsewhere Prefect's default behaviour stays.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _death_signal_preexec(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: after fork, before exec, in the child. libc is resolved here,
    in the parent, so the child only makes one foreign call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(70)  # cannot be tied: never run untied
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


@functools.cache
def _tied_server_class() -> type:
    from prefect.server.api.server import SubprocessASGIServer

    class TiedSubprocessASGIServer(SubprocessASGIServer):
        """Prefect's temporary server, started with a parent-death signal."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # The same command and environment as Prefect 3.8.8's own method.
            import prefect
            from prefect.settings import get_current_settings

            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env={
                    **os.environ,
                    "PREFECT_UI_ENABLED": "0",
                    "PREFECT__SERVER_EPHEMERAL": "1",
                    "PREFECT__SERVER_FINAL": "1",
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
                preexec_fn=_death_signal_preexec(os.getpid()),
            )

    return TiedSubprocessASGIServer


def needs_temporary_api() -> bool:
    """True when this process would start a temporary Prefect API server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def tie_temporary_api() -> bool:
    """Start this process's temporary Prefect API now, tied to this process's life.
    Returns False (and does nothing) when no temporary server is needed or it cannot be
    tied here (not Linux, not the main thread): Prefect then behaves as usual."""
    if not sys.platform.startswith("linux") or not needs_temporary_api():
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    from prefect.server.api.server import SubprocessASGIServer

    tied = _tied_server_class()
    current = SubprocessASGIServer._instances.get(None)
    if current is not None and current.running and not isinstance(current, tied):
        return False  # already started untied: nothing to do safely
    if not isinstance(current, tied):
        # get_client() asks SubprocessASGIServer() for the port-less singleton: make it ours.
        SubprocessASGIServer._instances.pop(None, None)
    server: Any = tied()
    server.start()
    log.debug("temporary Prefect API on %s, tied to pid %s", server.api_url, os.getpid())
    return True
