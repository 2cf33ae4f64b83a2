"""The local stack: everything the service needs, on 127.0.0.1, started and stopped by pid.

``python -m devstack.stack up`` (``make stack``) starts, in order: the moto sandbox
with a seeded world and a ready config (``--sandbox``), PostgreSQL (``--postgres``; the
machine's binaries refuse root, so they run as the ``postgres`` user), a Prefect server
(SQLite otherwise), the ``rollback-pool`` work pool, one global concurrency limit per
configured service, ``prefect deploy --all``, the process workers (manual runs from the
UI, reports), N long-lived ``rollback worker`` processes (automatic rollbacks, health
guard) and the webhook receiver (worker mode when there are long-lived workers, else
deployment mode). It waits until each answers, prints the URLs, records every pid in
``<state>/stack.json`` and returns; ``down`` (``make stack-down``) stops exactly those.

The API token of the receiver is generated into ``<state>/api-token`` (mode 0600) and
never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rollback.models import service_limit_name

ROOT = Path(__file__).resolve().parents[1]
POOL = "rollback-pool"
STATE_FILE = "stack.json"

_children: dict[int, subprocess.Popen[bytes]] = {}  # the processes this process started


class StackError(RuntimeError):
    """A part of the stack did not start; the message names it and its log file."""


@dataclass
class Options:
    state_dir: Path = ROOT / ".stack"
    workers: int = 1  # process workers on the pool
    worker_limit: int | None = None
    rollback_workers: int = 0  # long-lived `rollback worker` processes (flows/background.py)
    receiver_mode: str = "deployment"  # worker: requests go to the long-lived workers
    postgres: bool = False
    sandbox: bool = False
    sandbox_services: int = 0  # 0: the demo world; n: staging svc-01..svc-n (ECS)
    config: Path | None = None  # without the sandbox: $ROLLBACK_CONFIG
    api_port: int = 4200
    receiver_port: int = 8080
    moto_port: int = 5055
    pg_port: int = 5433
    deployments: tuple[str, ...] = ()  # empty: prefect deploy --all
    query_seconds: float = 1
    quiet: bool = False


@dataclass
class Proc:
    name: str
    pid: int
    cmd: list[str]
    log: str


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

    def start_worker(self, index: int, opts: Options) -> Proc:
        """One more process worker on the pool (also used to scale a running stack)."""
        cmd = [_exe("prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
        cmd += ["--name", f"stack-worker-{index}"]
        if opts.worker_limit:
            cmd += ["--limit", str(opts.worker_limit)]
        env = {"PREFECT_WORKER_QUERY_SECONDS": str(opts.query_seconds)}
        proc = _spawn(self, f"worker-{index}", cmd, env)
        self.save()
        return proc

    def start_rollback_worker(
        self, name: str | int, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Proc:
        """One more long-lived ``rollback worker`` (also used to scale a running stack)."""
        cmd = [_exe("rollback"), "worker", "--config", self.config, *(args or [])]
        proc = _spawn(self, f"rollback-worker-{name}", cmd, env or {})
        self.save()
        return proc

    def stop(self, proc: Proc) -> None:
        """Stop one process of the stack (e.g. a worker) and forget it."""
        _stop(proc)
        self.procs = [p for p in self.procs if p.pid != proc.pid]
        self.save()

    def restart_server(self) -> None:
        """Stop the Prefect server and start it again on the same port and database."""
        server = next(p for p in self.procs if p.name == "prefect-server")
        self.stop(server)
        env = (
            {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url} if self.database_url else {}
        )
        _spawn(self, "prefect-server", server.cmd, env)
        _wait_http(self, f"{self.api_url}/health", "prefect-server", timeout=90)

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            online = _api(self.api_url, "POST", f"/work_pools/{POOL}/workers/filter", {})
            if sum(w.get("status") == "ONLINE" for w in online or []) >= count:
                return
            if time.monotonic() > deadline:
                raise StackError(f"{count} worker(s) not online after {timeout:.0f}s (see logs)")
            time.sleep(0.3)


# -- up -------------------------------------------------------------------------------------
def up(opts: Options) -> Stack:
    """Start the stack; on any failure, stop what was started and raise StackError."""
    state = opts.state_dir.resolve()
    previous = Stack.load(state)
    if previous and any(_alive(p) for p in previous.procs):
        raise StackError(f"a stack is already running from {state}: stop it first (down)")
    (state / "logs").mkdir(parents=True, exist_ok=True)
    token_file = state / "api-token"
    token_file.write_text(secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    api = f"http://127.0.0.1:{opts.api_port}"
    stack = Stack(
        state_dir=str(state),
        api_url=f"{api}/api",
        ui_url=api,
        receiver_url=f"http://127.0.0.1:{opts.receiver_port}",
        config="",
        token_file=str(token_file),
        env={
            "PREFECT_API_URL": f"{api}/api",
            "PREFECT_UI_URL": api,
            "PREFECT_UI_API_URL": f"{api}/api",  # the UI's own default is port 4200
            "PREFECT_HOME": str(state / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        },
    )
    try:
        _start_all(stack, opts)
    except BaseException:
        down(state)
        raise
    return stack


def _start_all(stack: Stack, opts: Options) -> None:
    say = (lambda *_: None) if opts.quiet else (lambda msg: print(msg, flush=True))
    state = Path(stack.state_dir)
    if opts.sandbox:
        _start_sandbox(stack, opts, state)
        say(f"sandbox   {stack.moto_url} (config {stack.config})")
    else:
        config = opts.config or os.environ.get("ROLLBACK_CONFIG")
        if not config:
            raise StackError("no config: pass --config FILE, set ROLLBACK_CONFIG or use SANDBOX=1")
        stack.config = str(Path(config).resolve())
    stack.env["ROLLBACK_CONFIG"] = stack.config
    db = None
    if opts.postgres:
        db = _start_postgres(stack, opts, state / "postgres")
        say(f"postgres  127.0.0.1:{opts.pg_port} (data {stack.postgres_dir})")
    server_env = {"PREFECT_API_DATABASE_CONNECTION_URL": db} if db else {}
    stack.database = "postgresql" if db else "sqlite"
    stack.database_url = db
    _spawn(
        stack,
        "prefect-server",
        [_exe("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(opts.api_port)],
        server_env,
    )
    _wait_http(stack, f"{stack.api_url}/health", "prefect-server", timeout=90)
    say(f"prefect   {stack.ui_url} ({'PostgreSQL' if db else 'SQLite'})")
    create_pool(stack.api_url)
    limits = create_service_limits(stack.api_url, stack.config)
    say(f"limits    {len(limits)} global concurrency limit(s): rollback-<env>-<service>")
    deploy(stack, opts.deployments)
    say(f"deployed  {', '.join(opts.deployments) or 'all deployments'} from prefect.yaml")
    if publish_manual_form(stack.api_url, stack.config):
        say("form      rollback-manual: pick-lists of the config's environments and services")
    for i in range(1, opts.workers + 1):
        stack.start_worker(i, opts)
    stack.wait_workers(opts.workers)
    say(f"workers   {opts.workers} on {POOL} (polling every {opts.query_seconds:g}s)")
    if opts.rollback_workers:
        _start_rollback_workers(stack, opts)
        say(f"workers   {opts.rollback_workers} long-lived rollback worker(s) (+ health guard)")
    _spawn(
        stack,
        "receiver",
        [_exe("rollback"), "serve", "--config", stack.config, "--host", "127.0.0.1"]
        + ["--port", str(opts.receiver_port), "--mode", opts.receiver_mode],
        {"ROLLBACK_API_TOKEN": stack.token()},
    )
    _wait_http(stack, f"{stack.receiver_url}/healthz", "receiver", timeout=60)
    stack.save()


def _start_rollback_workers(stack: Stack, opts: Options) -> None:
    """The long-lived workers run the health guard's ticks: the every-minute deployment
    would guard twice, so its schedule is paused (nothing is lost: same flow)."""
    limit = ["--limit", str(opts.worker_limit)] if opts.worker_limit else []
    for i in range(1, opts.rollback_workers + 1):
        stack.start_rollback_worker(i, limit)
    found = _api(
        stack.api_url,
        "POST",
        "/deployments/filter",
        {"deployments": {"name": {"any_": ["health-guard"]}}},
    )
    for guard in found or []:
        for attempt in range(5):  # a busy server answers 503 for a moment
            try:
                _api(stack.api_url, "PATCH", f"/deployments/{guard['id']}", {"paused": True})
                break
            except StackError:
                if attempt == 4:
                    raise
                time.sleep(1 + attempt)
    wait_rollback_workers(stack, opts.rollback_workers)


def wait_rollback_workers(stack: Stack, count: int, timeout: float = 60) -> None:
    """Until ``count`` task workers subscribe to the rollback task (the server's
    ``/task_workers/filter``)."""
    deadline = time.monotonic() + timeout
    while True:
        online = _api(stack.api_url, "POST", "/task_workers/filter", {}) or []
        if len(online) >= count:
            return
        if time.monotonic() > deadline:
            raise StackError(f"{count} rollback worker(s) not subscribed after {timeout:.0f}s")
        time.sleep(0.3)


def _start_sandbox(stack: Stack, opts: Options, state: Path) -> None:
    from devstack.sandbox import SANDBOX_ENV

    stack.moto_url = f"http://127.0.0.1:{opts.moto_port}"
    stack.env.update(SANDBOX_ENV | {"AWS_ENDPOINT_URL": stack.moto_url})
    _spawn(
        stack,
        "moto",
        [_exe("moto_server"), "-H", "127.0.0.1", "-p", str(opts.moto_port)],
        {"MOTO_ECS_SERVICE_RUNNING": "1"},
    )
    _wait_http(stack, f"{stack.moto_url}/moto-api/", "moto", timeout=30)
    stack.config = str(state / "config.yaml")
    seed(stack, opts.sandbox_services)


def seed(stack: Stack, services: int = 0) -> None:
    """(Re)seed the sandbox world in a child process (its AWS environment stays there)."""
    cmd = [sys.executable, "-m", "devstack.stack", "seed", "--config", stack.config]
    result = subprocess.run(
        [*cmd, "--services", str(services)],
        env=_env(stack),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode:
        raise StackError(f"seeding the sandbox failed: {result.stderr.strip()[-2000:]}")


def seed_world(config_path: Path, services: int) -> None:
    """The demo world (services=0) or a fleet of ``services`` staging ECS services, each
    on api:4 (the bad deploy) with api:1..3 good in its history."""
    from devstack import sandbox
    from rollback.config import load_config
    from rollback.runtime import Runtime

    if not services:
        sandbox.seed_all(config_path)
        return
    names = [f"svc-{i:02d}" for i in range(1, services + 1)]
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(fleet_config(names), indent=2))
    sandbox.seed(services=dict.fromkeys(names, "api"))
    rt = Runtime(load_config(config_path))
    rt.ensure_tables()
    for name in names:
        rt.history.import_many(sandbox.demo_history("staging", name, "api"))


def fleet_config(names: list[str]) -> dict[str, Any]:
    from devstack.sandbox import CLUSTER

    def ecs(name: str) -> dict[str, Any]:
        return {
            "type": "ecs",
            "cluster": CLUSTER,
            "service": name,
            "ecr_repository": "api",
            "stabilize_timeout_s": 60,
            "poll_interval_s": 0.2,
        }

    return {
        "stores": {"create_tables": True},
        "environments": {
            "staging": {"protected": False, "services": {n: ecs(n) for n in names}},
        },
    }


def _start_postgres(stack: Stack, opts: Options, data: Path) -> str:
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg and not _reachable_by_others(data.parent):
        # e.g. under pytest's 0700 tmp dirs: the postgres user could not open it.
        home = Path(tempfile.mkdtemp(prefix="rollback-stack-pg-"))
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
        _run([*as_pg, "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"])
    # Unix socket in the data dir, TCP on loopback only; trust auth is loopback-only too.
    options = f"-h 127.0.0.1 -p {opts.pg_port} -k {data}"
    _run([*as_pg, "pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
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
        _run([*as_pg, "createdb", *host, "prefect"])
    return f"postgresql+asyncpg://postgres@127.0.0.1:{opts.pg_port}/prefect"


def _reachable_by_others(path: Path) -> bool:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def create_pool(api_url: str) -> None:
    from prefect.workers.process import ProcessWorker

    body = {
        "name": POOL,
        "type": "process",
        "description": "Rollback flow runs as processes on the worker's host.",
        "base_job_template": ProcessWorker.get_default_base_job_template(),
    }
    _api(api_url, "POST", "/work_pools/", body, ok_conflict=True)


def create_service_limits(api_url: str, config_path: str) -> list[str]:
    """One strict global concurrency limit (1 slot) per configured service."""
    from rollback.config import load_config

    config = load_config(config_path)
    names = [
        limit_name(env, service)
        for env, env_cfg in config.environments.items()
        for service in env_cfg.services
    ]
    for name in names:
        created = _api(api_url, "POST", "/v2/concurrency_limits/", {"name": name, "limit": 1}, True)
        if created is None:  # exists: make sure it is one slot
            _api(api_url, "PATCH", f"/v2/concurrency_limits/{name}", {"limit": 1})
    return names


def limit_name(environment: str, service: str) -> str:
    return service_limit_name(environment, service)


def publish_manual_form(api_url: str, config_path: str) -> bool:
    """Give ``rollback-manual`` its Custom Run form built from the config: pick-lists of
    the configured environments and services (``devstack.forms``). Run it after every
    ``prefect deploy``, which resets the form; False when it is not deployed."""
    from devstack.forms import MANUAL_DEPLOYMENT, pick_lists
    from rollback.config import load_config

    flow_name, name = MANUAL_DEPLOYMENT.split("/")
    query = {"flows": {"name": {"any_": [flow_name]}}, "deployments": {"name": {"any_": [name]}}}
    found = _api(api_url, "POST", "/deployments/filter", query) or []
    config = load_config(config_path)
    for deployment in found:
        form = pick_lists(deployment["parameter_openapi_schema"], config)
        path = f"/deployments/{deployment['id']}"
        _api(api_url, "PATCH", path, {"parameter_openapi_schema": form})
    return bool(found)


def deploy(stack: Stack, names: tuple[str, ...] = ()) -> None:
    """``prefect deploy --all`` (or the named deployments) from the repository root."""
    selection = [a for n in names for a in ("-n", n)] or ["--all"]
    log = Path(stack.state_dir, "logs", "deploy.log")
    with log.open("w") as out:
        result = subprocess.run(
            [_exe("prefect"), "--no-prompt", "deploy", *selection],
            cwd=ROOT,
            env=_env(stack),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    if result.returncode:
        tail = log.read_text()[-1500:]
        raise StackError(f"prefect deploy failed (log {log}):\n{tail}")


# -- down -----------------------------------------------------------------------------------
def down(state_dir: Path, quiet: bool = True) -> list[str]:
    """Stop every process the stack at ``state_dir`` started, newest first."""
    stack = Stack.load(state_dir.resolve())
    if stack is None:
        return []
    stopped = []
    for proc in reversed(stack.procs):
        if proc.name == "postgres" and stack.postgres_dir:
            as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            if _alive(proc):
                subprocess.run(
                    [*as_pg, "pg_ctl", "-D", stack.postgres_dir, "-m", "fast", "-w", "stop"],
                    capture_output=True,
                    timeout=60,
                )
        _stop(proc)
        if proc.name == "postgres" and "rollback-stack-pg-" in (stack.postgres_dir or ""):
            shutil.rmtree(Path(stack.postgres_dir or "").parent, ignore_errors=True)
        stopped.append(f"{proc.name} ({proc.pid})")
        if not quiet:
            print(f"stopped {proc.name} (pid {proc.pid})", flush=True)
    stack.procs = []
    stack.save()
    return stopped


def _stop(proc: Proc, timeout: float = 15) -> None:
    if not _alive(proc):
        return
    # Each process was started in its own session: its group holds its children only.
    group = os.getpgid(proc.pid) == proc.pid
    kill = (lambda sig: os.killpg(proc.pid, sig)) if group else (lambda sig: os.kill(proc.pid, sig))
    try:
        kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(proc):
            kill(signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(proc: Proc) -> bool:
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


# -- helpers --------------------------------------------------------------------------------
def _exe(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def _env(stack: Stack, extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT_"))}
    return base | stack.env | (extra or {})


def _spawn(stack: Stack, name: str, cmd: list[str], extra: dict[str, str]) -> Proc:
    log = Path(stack.state_dir, "logs", f"{name}.log")
    with log.open("ab") as out:
        popen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_env(stack, extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[popen.pid] = popen
    proc = Proc(name, popen.pid, cmd, str(log))
    stack.procs.append(proc)
    stack.save()
    return proc


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise StackError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout)[-1500:]}")


def _wait_http(stack: Stack, url: str, name: str, timeout: float) -> None:
    proc = next(p for p in reversed(stack.procs) if p.name == name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if not _alive(proc):
                raise StackError(f"{name} exited; see {proc.log}") from None
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not answer {url} in {timeout:.0f}s") from None
            time.sleep(0.2)


def _api(api_url: str, method: str, path: str, body: Any, ok_conflict: bool = False) -> Any | None:
    request = urllib.request.Request(
        api_url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            text = resp.read()
    except urllib.error.HTTPError as exc:
        if ok_conflict and exc.code == 409:
            return None
        raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    return json.loads(text) if text else {}


def _reports_dir(stack: Stack) -> str:
    """Where the report deployments write (a relative out_dir is under the repository,
    the workers' working directory)."""
    from rollback.config import load_config

    out_dir = load_config(stack.config).reports.out_dir
    return str(ROOT / out_dir) if out_dir else "none (reports.out_dir is empty)"


# -- CLI ------------------------------------------------------------------------------------
def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the stack and return once everything answers")
    start.add_argument("--state-dir", type=Path, default=ROOT / ".stack")
    start.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", "1")),
        help="long-lived rollback workers (automatic rollbacks, health guard); 0: none, the "
        "receiver then starts deployment runs on the process workers",
    )
    start.add_argument(
        "--process-workers",
        type=int,
        default=1,
        help="process workers on the pool (manual runs from the UI, reports)",
    )
    start.add_argument("--worker-limit", type=int, default=None)
    start.add_argument("--postgres", action="store_true", default=_flag("POSTGRES"))
    start.add_argument("--sandbox", action="store_true", default=_flag("SANDBOX"))
    start.add_argument("--sandbox-services", type=int, default=0)
    start.add_argument("--config", type=Path, default=None)
    for name, default in (("api", 4200), ("receiver", 8080), ("moto", 5055), ("pg", 5433)):
        start.add_argument(f"--{name}-port", type=int, default=default)
    start.add_argument("--deployment", action="append", default=[], dest="deployments")
    stop = sub.add_parser("down", help="stop what `up` started (by pid)")
    stop.add_argument("--state-dir", type=Path, default=ROOT / ".stack")
    seeder = sub.add_parser("seed", help="(internal) seed the sandbox world")
    seeder.add_argument("--config", type=Path, required=True)
    seeder.add_argument("--services", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "seed":
        seed_world(args.config, args.services)
        return 0
    if args.command == "down":
        stopped = down(args.state_dir, quiet=False)
        print("nothing to stop" if not stopped else f"stack stopped ({len(stopped)} processes)")
        return 0
    opts = Options(
        state_dir=args.state_dir,
        workers=args.process_workers,
        rollback_workers=args.workers,
        receiver_mode="worker" if args.workers else "deployment",
        worker_limit=args.worker_limit,
        postgres=args.postgres,
        sandbox=args.sandbox,
        sandbox_services=args.sandbox_services,
        config=args.config,
        api_port=args.api_port,
        receiver_port=args.receiver_port,
        moto_port=args.moto_port,
        pg_port=args.pg_port,
        deployments=tuple(args.deployments),
    )
    try:
        stack = up(opts)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nPrefect UI:  {stack.ui_url}")
    print(f"Receiver:    {stack.receiver_url}  (bearer token in {stack.token_file})")
    print(f"Config:      {stack.config}")
    print(f"Logs:        {Path(stack.state_dir, 'logs')}")
    print(f"Reports:     {_reports_dir(stack)}")
    print("Use it from a shell:")
    for key in ("PREFECT_API_URL", "AWS_ENDPOINT_URL", "ROLLBACK_CONFIG"):
        if key in stack.env:
            print(f"  export {key}={stack.env[key]}")
    print("Stop it: make stack-down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
