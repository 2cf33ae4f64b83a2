"""The running stack as a record: its URLs, config, token file and every process it
started, saved to ``<state>/stack.json`` after each change so ``down`` (another
process) stops exactly those; and the operations that add or remove one process."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devstack.stack import procs
from devstack.stack.api import call
from devstack.stack.errors import StackError
from devstack.stack.options import POOL, Options
from devstack.stack.procs import Proc

STATE_FILE = "stack.json"


@dataclass
class Stack:
    state_dir: str
    api_url: str
    ui_url: str
    receiver_url: str
    config: str
    token_file: str
    env: dict[str, str]  # what clients of this stack set (no secrets)
    moto_url: str | None = None
    database: str = "sqlite"
    postgres_dir: str | None = None
    database_url: str | None = None  # PostgreSQL on loopback, trust auth: no secret
    procs: list[Proc] = field(default_factory=list)

    def save(self) -> None:
        Path(self.state_dir, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Stack | None:
        file = Path(state_dir, STATE_FILE)
        if not file.exists():
            return None
        data = json.loads(file.read_text())
        data["procs"] = [Proc(**p) for p in data.get("procs", [])]
        return cls(**data)

    def token(self) -> str:
        return Path(self.token_file).read_text().strip()

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a process run against this stack."""
        return procs.child_env(self.env, extra)

    def spawn(self, name: str, cmd: list[str], extra: dict[str, str]) -> Proc:
        """Start one process of the stack (log in ``<state>/logs/<name>.log``) and record it."""
        proc = procs.spawn(name, cmd, self.child_env(extra), Path(self.state_dir, "logs"))
        self.procs.append(proc)
        self.save()
        return proc

    def start_worker(self, index: int, opts: Options) -> Proc:
        """One more process worker on the pool (also used to scale a running stack)."""
        cmd = [procs.exe("prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
        cmd += ["--name", f"stack-worker-{index}"]
        if opts.worker_limit:
            cmd += ["--limit", str(opts.worker_limit)]
        env = {"PREFECT_WORKER_QUERY_SECONDS": str(opts.query_seconds)}
        return self.spawn(f"worker-{index}", cmd, env)

    def start_rollback_worker(
        self, name: str | int, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Proc:
        """One more long-lived ``rollback worker`` (also used to scale a running stack)."""
        cmd = [procs.exe("rollback"), "worker", "--config", self.config, *(args or [])]
        return self.spawn(f"rollback-worker-{name}", cmd, env or {})

    def stop(self, proc: Proc) -> None:
        """Stop one process of the stack (e.g. a worker) and forget it."""
        procs.stop(proc)
        self.procs = [p for p in self.procs if p.pid != proc.pid]
        self.save()

    def restart_server(self) -> None:
        """Stop the Prefect server and start it again on the same port and database."""
        server = next(p for p in self.procs if p.name == "prefect-server")
        self.stop(server)
        env = (
            {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url} if self.database_url else {}
        )
        started = self.spawn("prefect-server", server.cmd, env)
        procs.wait_http(started, f"{self.api_url}/health", timeout=90)

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` process workers on the pool are online."""
        deadline = time.monotonic() + timeout
        while True:
            online = call(self.api_url, "POST", f"/work_pools/{POOL}/workers/filter", {})
            if sum(w.get("status") == "ONLINE" for w in online or []) >= count:
                return
            if time.monotonic() > deadline:
                raise StackError(f"{count} worker(s) not online after {timeout:.0f}s (see logs)")
            time.sleep(0.3)
