"""A killed CLI leaves nothing running: without PREFECT_API_URL, ``rollback run`` and
``rollback serve`` start a temporary Prefect API server (uvicorn, ~200 MB) as a child;
when the CLI dies, by any signal, that child dies with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.functional.world import make_world
from tests.servers import answers

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

ROLLBACK = str(Path(sys.executable).with_name("rollback"))
START_TIMEOUT_S = 90


# -- /proc helpers ------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie runs nothing


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)] = stat[1]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def temporary_server(cli_pid: int) -> tuple[int, int] | None:
    """(pid, port) of the CLI's temporary Prefect API server, once it answers."""
    for pid in descendants(cli_pid):
        args = cmdline(pid)
        if "uvicorn" in args and "--port" in args:
            port = int(args[args.index("--port") + 1])
            if answers(f"http://127.0.0.1:{port}/api/health"):
                return pid, port
    return None


def wait_for(what: str, check: Callable[[], object], proc: subprocess.Popen[str]) -> object:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (value := check()) is not None and value is not False:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the CLI ended before {what}: {proc.returncode}\n{out}\n{err}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def stalled_endpoint() -> Iterator[str]:
    """An AWS endpoint that accepts connections and never answers: the CLI stays busy in
    its flow run (it would otherwise finish and stop the server itself)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def no_prefect_api_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cli_env(PREFECT_HOME=str(tmp_path / "prefect-home"), **extra)
    env.pop("PREFECT_API_URL", None)
    return env


def assert_all_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = {p: " ".join(cmdline(p))[:120] for p in pids if alive(p)}
    for pid in left:  # clean up after a failure: never leave the orphan to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after the CLI died: {left}"


def kill_and_check(proc: subprocess.Popen[str], sig: int) -> None:
    server = temporary_server(proc.pid)
    assert server is not None
    tree = descendants(proc.pid)
    assert server[0] in tree
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert_all_gone(tree)
    assert not answers(f"http://127.0.0.1:{server[1]}/api/health")


# -- the tests ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_no_temporary_server(aws: str, tmp_path: Path, sig: int) -> None:
    # GIVEN a rollback run without PREFECT_API_URL, busy in its flow (AWS never answers)
    config = make_world(tmp_path)
    with stalled_endpoint() as stalled:
        proc = subprocess.Popen(
            [ROLLBACK, "run", "--config", str(config), "--env", "staging", "--service", "api"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=no_prefect_api_env(tmp_path, AWS_ENDPOINT_URL=stalled),
        )
        try:
            # WHEN its temporary Prefect server is up and the CLI is killed
            wait_for("the temporary server", lambda: temporary_server(proc.pid), proc)
            # THEN no process of it remains
            kill_and_check(proc, sig)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.slow
def test_killed_serve_leaves_no_temporary_server(aws: str, tmp_path: Path) -> None:
    # GIVEN the receiver in embedded mode without PREFECT_API_URL, up and answering
    config = make_world(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [ROLLBACK, "serve", "--config", str(config), "--port", str(port), "--mode", "embedded"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=no_prefect_api_env(tmp_path),
    )
    try:
        wait_for("the receiver", lambda: answers(f"http://127.0.0.1:{port}/healthz"), proc)
        wait_for("the temporary server", lambda: temporary_server(proc.pid), proc)
        # WHEN the receiver is killed THEN its temporary server dies with it
        kill_and_check(proc, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
