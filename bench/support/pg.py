"""A throwaway PostgreSQL cluster for a benchmark's Prefect server (the production layout).

    with pg.cluster() as db:  # db.url for PREFECT_API_DATABASE_CONNECTION_URL,
        ...                   # db.pid the postmaster (every backend is its child)

``initdb``, a server on 127.0.0.1 (trust auth, loopback only; its Unix socket in the
data dir) and a ``prefect`` database, in a ``mkdtemp`` directory. The machine's binaries
refuse root: as root they run as the ``postgres`` user (``runuser``), and the directory is
0711 so that user can reach the data dir inside it. When the context ends — normally, on
an exception or on Ctrl-C — the server is stopped (fast; killed if it does not stop) and
the directory removed. ``pg_ctl`` starts the postmaster in its own session, so a Ctrl-C
in the terminal reaches the benchmark, which then stops its Prefect server before this.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TEMP_PREFIX = "bench-pg-"


@dataclass(frozen=True)
class Cluster:
    url: str  # postgresql+asyncpg://postgres@127.0.0.1:PORT/prefect
    pid: int  # the postmaster
    log: Path  # the server's log (gone with the cluster: copy it before the end)


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(args: list[str | Path]) -> None:
    cmd = [*_as_postgres(), *(str(a) for a in args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-500:]}")


@contextmanager
def cluster(port: int | None = None) -> Iterator[Cluster]:
    """A running cluster with a ``prefect`` database until the context ends."""
    from devstack.sandbox import free_port

    home = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    home.chmod(0o711)  # the postgres user passes through, lists nothing
    data, log = home / "data", home / "postgres.log"
    data.mkdir()
    log.touch()
    if _as_postgres():
        for path in (data, log):
            shutil.chown(path, "postgres", "postgres")
    try:
        _run(["initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"])
        port = port or free_port()
        options = f"-h 127.0.0.1 -p {port} -k {data}"
        _run(["pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start"])
        pid = int((data / "postmaster.pid").read_text().split()[0])
        _run(["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect"])
        yield Cluster(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", pid, log)
    finally:
        _stop(data)
        shutil.rmtree(home, ignore_errors=True)


def _stop(data: Path) -> None:
    """``pg_ctl stop -m fast``; the postmaster killed if it is still there after it."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return  # never started
    pid = int(pid_file.read_text().split()[0])
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # checked below
        _run(["pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def database(kind: str) -> contextlib.AbstractContextManager[Cluster | None]:
    """A benchmark's ``--database``: a throwaway cluster for ``postgresql``, nothing for
    ``sqlite`` (the Prefect server then keeps SQLite in its temp dir)."""
    return cluster() if kind == "postgresql" else contextlib.nullcontext()
