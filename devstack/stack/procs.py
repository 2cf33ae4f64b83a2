"""The stack's processes: started in their own session with a log file, known by pid,
stopped by process group, and waited for until they answer over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.stack.errors import StackError
from devstack.stack.options import ROOT

_children: dict[int, subprocess.Popen[bytes]] = {}  # the processes this process started


@dataclass
class Proc:
    name: str
    pid: int
    cmd: list[str]
    log: str


def exe(name: str) -> str:
    """The venv's own ``name`` (prefect, rollback, moto_server) when there is one."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def child_env(env: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without pytest's and Prefect's settings, then ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT_"))}
    return base | env | (extra or {})


def spawn(name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    """Start ``cmd`` in its own session, output appended to ``<log_dir>/<name>.log``."""
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[popen.pid] = popen
    return Proc(name, popen.pid, cmd, str(log))


def run(cmd: list[str]) -> None:
    """Run ``cmd`` to its end; StackError with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise StackError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout)[-1500:]}")


def wait_http(proc: Proc, url: str, timeout: float) -> None:
    """Until ``url`` answers (any HTTP status); StackError if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if not alive(proc):
                raise StackError(f"{proc.name} exited; see {proc.log}") from None
            if time.monotonic() > deadline:
                raise StackError(f"{proc.name} did not answer {url} in {timeout:.0f}s") from None
            time.sleep(0.2)


def stop(proc: Proc, timeout: float = 15) -> None:
    """SIGTERM the process (its group when it leads one), SIGKILL after ``timeout``."""
    if not alive(proc):
        return
    # Each process was started in its own session: its group holds its children only.
    group = os.getpgid(proc.pid) == proc.pid
    kill = (lambda sig: os.killpg(proc.pid, sig)) if group else (lambda sig: os.kill(proc.pid, sig))
    try:
        kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(proc):
            kill(signal.SIGKILL)
    except ProcessLookupError:
        pass


def alive(proc: Proc) -> bool:
    """Is ``proc.pid`` still the process we started (not a recycled pid)?"""
    child = _children.get(proc.pid)
    if child is not None:  # started by this process: ask it (no fork/exec race)
        return child.poll() is None
    try:
        raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        _reap(proc.pid)
        return False
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    wanted = Path(proc.cmd[0]).name
    return any(Path(a).name == wanted or a.endswith(wanted) for a in args[:3])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
