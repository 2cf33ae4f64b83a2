"""PostgreSQL for the Prefect server (``--postgres``): the machine's binaries refuse
root, so as root they run as the ``postgres`` user, from a directory it can reach."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.stack import procs
from devstack.stack.options import Options
from devstack.stack.procs import Proc
from devstack.stack.state import Stack

TEMP_PREFIX = "rollback-stack-pg-"


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_postgres(stack: Stack, opts: Options, data: Path) -> str:
    """Create (once) and start the cluster in ``data``; the server's database URL."""
    as_pg = _as_postgres()
    if as_pg and not _reachable_by_others(data.parent):
        # e.g. under pytest's 0700 tmp dirs: the postgres user could not open it.
        home = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        home.chmod(0o711)
        data = home / "data"
    stack.postgres_dir = str(data)
    log = data.parent / "postgres.log"  # written by the postgres user
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        log.touch()
        if as_pg:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(log, "postgres", "postgres")
        procs.run([*as_pg, "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"])
    # Unix socket in the data dir, TCP on loopback only; trust auth is loopback-only too.
    options = f"-h 127.0.0.1 -p {opts.pg_port} -k {data}"
    procs.run([*as_pg, "pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
    pid = int((data / "postmaster.pid").read_text().split()[0])
    stack.procs.append(Proc("postgres", pid, ["postgres", "-D", str(data)], str(log)))
    stack.save()
    host = ["-h", "127.0.0.1", "-p", str(opts.pg_port), "-U", "postgres"]
    exists = subprocess.run(
        [*as_pg, "psql", *host, "-tAc", "SELECT 1 FROM pg_database WHERE datname='prefect'"],
        capture_output=True,
        text=True,
    )
    if exists.stdout.strip() != "1":
        procs.run([*as_pg, "createdb", *host, "prefect"])
    return f"postgresql+asyncpg://postgres@127.0.0.1:{opts.pg_port}/prefect"


def stop_postgres(data_dir: str, proc: Proc) -> None:
    """``pg_ctl stop`` (fast), then the process itself; a temporary home is removed."""
    if procs.alive(proc):
        subprocess.run(
            [*_as_postgres(), "pg_ctl", "-D", data_dir, "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
    procs.stop(proc)
    if TEMP_PREFIX in data_dir:
        shutil.rmtree(Path(data_dir).parent, ignore_errors=True)


def _reachable_by_others(path: Path) -> bool:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))
