"""Signed failure webhook → the moment the AWS API (moto) receives ``UpdateService``.

p50/p95 over N rollbacks (default 20) of one ECS service in three start modes:
(a) embedded — the receiver runs the rollback flow in its own worker thread;
(b) deployment — ``run_deployment`` on a local Prefect server, a process worker
    polling every second (PREFECT_WORKER_QUERY_SECONDS=1) runs it;
(c) warm worker — the receiver in worker mode queues a flow run (Pending), a
    long-lived ``rollback worker`` process runs the flow in-process (issue 12).
Both against one local Prefect server and a moto server behind a recording proxy, all on
127.0.0.1. The server's database is PostgreSQL by default, as in production (a throwaway
cluster, ``bench/support/pg.py``); ``--database sqlite`` puts it on SQLite, where
Prefect's own writes contend for the database lock and its client retries a locked
answer after ~2 s (seen as a tail of ~2.5 s). Also prints the raw time of the same API calls made directly with boto3, and
each mode's ratio to it. Bounded: every wait has a deadline; a mode that fails prints
why and the others still run; everything it starts, it stops.

    python bench/webhook_latency.py [--runs 20] [--modes embedded,deployment,warm-worker]
                                    [--database {postgresql,sqlite}] [--json]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
REPO = "octo-org/octo-repo"


# -- local stand-ins ----------------------------------------------------------------------
class Recorder:
    """A pass-through proxy in front of moto that timestamps every UpdateService."""

    def __init__(self, upstream: str) -> None:
        self.updates: list[float] = []
        target = urlsplit(upstream)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.headers.get("X-Amz-Target", "").endswith(".UpdateService"):
                    outer.updates.append(time.monotonic())
                host = target.hostname or "127.0.0.1"
                conn = http.client.HTTPConnection(host, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# This process's environment for every benchmark that drives the stand-ins (set first).
BENCH_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def spawn(procs: list[Any], args: list[str], env: dict[str, str], log: Path) -> Any:
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(proc)
    return proc


def prefect_env(tmp: Path, database_url: str | None = None) -> dict[str, str]:
    """A Prefect process's environment; the server's database is ``database_url``
    (e.g. ``postgresql+asyncpg://...``), by default SQLite in ``tmp``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return base | {
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url
        or f"sqlite+aiosqlite:///{tmp}/prefect.db",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


@dataclass(frozen=True)
class Server:
    """A benchmark's Prefect server: its temp dir, the processes started for the run (the
    server first), its API URL and its database (None: SQLite in ``tmp``)."""

    tmp: Path
    procs: list[Any]
    api: str
    db: Any


@contextmanager
def prefect_server(database: str) -> Iterator[Server]:
    """A temp dir, a database (``postgresql``: a throwaway cluster; ``sqlite``) and a
    Prefect server on it. On the way out — success, failure or Ctrl-C — every process
    started in the block stops, then the database, then the temp dir."""
    from support import pg

    with (
        tempfile.TemporaryDirectory() as tmp_name,
        pg.database(database) as db,
        processes() as procs,
    ):
        tmp = Path(tmp_name)
        yield Server(tmp, procs, start_prefect_server(procs, tmp, db.url if db else None), db)


def wait_listening(proc: Any, log: Path, timeout: float = 60) -> None:
    """Until the ``rollback worker`` process ``proc`` says on ``log`` that it listens."""
    from flows.background import LISTENING

    line = f"{LISTENING} (pid {proc.pid},"
    wait_for(lambda: line in log.read_text(errors="replace"), timeout, "the rollback worker")


def start_prefect_server(procs: list[Any], tmp: Path, database_url: str | None = None) -> str:
    """``prefect server start`` on ``database_url`` (default SQLite in ``tmp``); its API URL."""
    import httpx

    from devstack.sandbox import free_port

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    spawn(procs, cmd, prefect_env(tmp, database_url), tmp / "server.log")
    wait_for(lambda: httpx.get(api + "/health", timeout=2).status_code == 200, 60, "prefect")
    return api


def write_config(path: Path, mode: str, cooldown_s: float = 0) -> Path:
    import yaml

    from devstack import sandbox

    data = sandbox.demo_config(path, poll_interval_s=0.05)
    for env in data["environments"].values():
        env["cooldown_s"] = cooldown_s
        env["max_auto_per_hour"] = 1000 if not cooldown_s else 3
    data["webhooks"] = {
        "github": {
            "secret_env": "BENCH_GITHUB_SECRET",
            "rules": [{"repository": REPO, "environment": "staging", "service": "api"}],
        },
        "api_token_env": "BENCH_API_TOKEN",
        "mode": mode,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed(config_path: Path) -> Any:
    from devstack import sandbox
    from rollback.config import load_config
    from rollback.runtime import Runtime

    sandbox.seed()
    config = load_config(config_path)
    rt = Runtime(config)
    rt.ensure_tables()
    rt.history.import_many(sandbox.demo_history("staging", "api"))
    return config


def failure_body(run_id: int | None = None) -> bytes:
    fixtures = ROOT / ".." / "shared" / "fixtures" / "github-webhooks"
    payload = json.loads((fixtures / "workflow_run.completed.payload.json").read_text())
    payload["workflow_run"]["conclusion"] = "failure"
    payload["workflow_run"]["event"] = "push"  # a deploy on push (the fixture: dispatch)
    if run_id is not None:
        payload["workflow_run"]["id"] = run_id
    return json.dumps(payload).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- measurements -------------------------------------------------------------------------
def reset_service() -> None:
    from devstack import sandbox
    from rollback import aws

    aws.client("ecs").update_service(
        cluster=sandbox.CLUSTER, service="api-staging", taskDefinition="api:4"
    )


def raw_calls(recorder: Recorder, runs: int) -> list[float]:
    """The same ECS calls a rollback needs to reach UpdateService, made directly."""
    from devstack import sandbox
    from rollback import aws

    out = []
    for _ in range(runs):
        reset_service()
        before = len(recorder.updates)
        start = time.monotonic()
        ecs = aws.client("ecs")
        svc = ecs.describe_services(cluster=sandbox.CLUSTER, services=["api-staging"])
        ecs.describe_task_definition(taskDefinition=svc["services"][0]["taskDefinition"])
        ecs.describe_task_definition(taskDefinition="api:3")
        ecs.update_service(cluster=sandbox.CLUSTER, service="api-staging", taskDefinition="api:3")
        out.append(recorder.updates[before] - start)
    return out


def webhook_runs(
    url: str,
    secret: str,
    recorder: Recorder,
    runs: int,
    finished: Callable[[str], bool],
) -> list[float]:
    import httpx

    from deployments.signatures import github_signature

    out = []
    with httpx.Client(timeout=30) as client:
        for i in range(runs):
            body = failure_body(run_id=time.time_ns())  # a new failed run each time
            reset_service()
            before = len(recorder.updates)
            headers = {
                "X-GitHub-Event": "workflow_run",
                "X-GitHub-Delivery": f"bench-{time.time_ns()}-{i}",
                "X-Hub-Signature-256": github_signature(secret, body),
                "Content-Type": "application/json",
            }
            start = time.monotonic()
            resp = client.post(url + "/webhooks/github", content=body, headers=headers)
            assert resp.status_code == 202, resp.text
            wait_for(functools.partial(_grown, recorder.updates, before), 60, "UpdateService")
            out.append(recorder.updates[before] - start)
            audit_id = resp.json()["audit_id"]
            wait_for(functools.partial(finished, audit_id), 90, "the rollback to finish")
    return out


def _grown(values: list[float], size: int) -> bool:
    return len(values) > size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="last line: JSON summary")
    parser.add_argument(
        "--modes",
        default="embedded,deployment,warm-worker",
        help="comma-separated modes to measure (raw always runs)",
    )
    parser.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="the Prefect server's database (default: a throwaway PostgreSQL cluster)",
    )
    args = parser.parse_args()
    os.environ.update(BENCH_ENV)

    from deployments.signatures import github_signature  # noqa: F401 - import cost up front
    from devstack import sandbox

    secret = os.urandom(24).hex()
    t0 = time.monotonic()
    print(f"Prefect server on {args.database}", flush=True)
    with prefect_server(args.database) as server:
        os.environ["PREFECT_API_URL"] = server.api  # before the first Prefect client exists
        with sandbox.moto_server() as moto:
            recorder = Recorder(moto)
            os.environ["AWS_ENDPOINT_URL"] = recorder.url
            modes = args.modes.split(",")
            results = run_modes(
                server.procs, server.tmp, server.api, recorder, secret, args.runs, modes
            )
            recorder.close()
        report(results, args.runs, time.monotonic() - t0)
    if args.json:
        p50 = {m: (round(statistics.median(v), 3) if v else None) for m, v in results.items()}
        print(
            json.dumps(
                {
                    "embedded_p50_s": p50.get("embedded"),
                    "process_worker_p50_s": p50.get("deployment"),
                    "warm_worker_p50_s": p50.get("warm-worker"),
                    "raw_p50_s": p50.get("raw"),
                    "database": args.database,
                }
            )
        )


@dataclass(frozen=True)
class Rig:
    """What every mode runs against: the processes, the Prefect server, moto behind the
    recorder, the webhook secret, and when a rollback counts as finished."""

    procs: list[Any]
    tmp: Path
    api: str
    recorder: Recorder
    secret: str
    runs: int
    environ: dict[str, str]
    finished: Callable[[str], bool]

    def through_receiver(self, config: Any, launcher: Any) -> list[float]:
        """A receiver with ``launcher`` in this process: one warm-up webhook (first
        imports, not counted), then ``runs`` measured ones."""
        from deployments.cli.serve import background_server
        from deployments.receiver import create_app

        with background_server(create_app(config, launcher, environ=self.environ)) as url:
            webhook_runs(url, self.secret, self.recorder, 1, self.finished)
            return webhook_runs(url, self.secret, self.recorder, self.runs, self.finished)


def run_modes(
    procs: list[Any],
    tmp: Path,
    api: str,
    recorder: Recorder,
    secret: str,
    runs: int,
    modes: list[str],
) -> dict[str, list[float]]:
    from flows.launch import EmbeddedLauncher
    from rollback.runtime import Runtime

    config = seed(write_config(tmp / "embedded.yaml", "embedded"))
    rt = Runtime(config)
    launcher = EmbeddedLauncher(config)

    def finished(audit_id: str) -> bool:
        record = rt.audit.get(audit_id)
        done = bool(record and record.status.final)
        return (
            done and not launcher.busy("staging", "api") and not rt.locks.holder("staging", "api")
        )

    environ = {"BENCH_GITHUB_SECRET": secret, "BENCH_API_TOKEN": secret[::-1]}
    rig = Rig(procs, tmp, api, recorder, secret, runs, environ, finished)
    results: dict[str, list[float]] = {"raw": raw_calls(recorder, runs)}

    def embedded() -> list[float]:
        out = rig.through_receiver(config, launcher)
        launcher.close()
        return out

    for name, measure in (
        ("embedded", embedded),  # (a)
        ("deployment", lambda: deployment_mode(rig)),  # (b)
        ("warm-worker", lambda: warm_worker_mode(rig)),  # (c)
    ):
        if name in modes:
            phase(results, name, measure)
    return results


def phase(results: dict[str, list[float]], name: str, measure: Callable[[], list[float]]) -> None:
    """One mode; a failure is printed and leaves the mode empty (each wait has a deadline)."""
    try:
        results[name] = measure()
    except Exception as exc:  # noqa: BLE001 - report it and let the other modes run
        print(f"mode {name} failed: {type(exc).__name__}: {exc}", flush=True)
        results[name] = []


def deployment_mode(rig: Rig) -> list[float]:
    """(b) a process work pool, the deployment and a 1 s-polling process worker."""
    from flows.launch import DeploymentLauncher
    from rollback.config import load_config
    from tests.functional.test_webhooks import _deploy_rollback_auto

    dconfig = load_config(write_config(rig.tmp / "deployment.yaml", "deployment"))
    _deploy_rollback_auto(rig.api, "bench-pool")
    worker_env = prefect_env(rig.tmp) | {
        "PREFECT_API_URL": rig.api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "AWS_ENDPOINT_URL": rig.recorder.url,
    }
    command = [str(BIN / "prefect"), "worker", "start", "--pool", "bench-pool"]
    spawn(rig.procs, command, worker_env, rig.tmp / "worker.log")
    out = rig.through_receiver(dconfig, DeploymentLauncher(dconfig))
    for proc in rig.procs[1:]:  # the process worker: not needed by (c)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    del rig.procs[1:]
    return out


def warm_worker_mode(rig: Rig) -> list[float]:
    """(c) the receiver queues flow runs (Pending, the queue's tag); one long-lived
    ``rollback worker`` hears of them on the server's event stream and runs them."""
    from flows.background import WorkerLauncher
    from rollback.config import load_config

    config_path = write_config(rig.tmp / "worker.yaml", "worker")
    env = prefect_env(rig.tmp) | {"PREFECT_API_URL": rig.api, "AWS_ENDPOINT_URL": rig.recorder.url}
    cmd = [str(BIN / "rollback"), "worker", "--config", str(config_path), "--health-interval", "0"]
    log = rig.tmp / "rollback-worker.log"
    wait_listening(spawn(rig.procs, cmd, env, log), log)
    wconfig = load_config(config_path)
    return rig.through_receiver(wconfig, WorkerLauncher(wconfig))


def report(results: dict[str, list[float]], runs: int, elapsed: float) -> None:
    raw50 = statistics.median(results["raw"])
    print(f"webhook → UpdateService latency, {runs} rollbacks per mode ({elapsed:.0f} s in all)")
    print(f"{'mode':<12} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'p50 / raw':>10}  goal")
    goals = {
        "raw": "",
        "embedded": "p50 ≤ 2 s",
        "deployment": "p50 ≤ 5 s",
        "warm-worker": "p50 ≤ 1.0 s",
    }
    for mode in ("raw", "embedded", "deployment", "warm-worker"):
        if mode not in results:
            continue  # not asked for (--modes)
        values = results[mode]
        if not values:
            print(f"{mode:<12} {'failed: see above':>28}  {goals[mode]}")
            continue
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        print(
            f"{mode:<12} {p50:>8.3f} {p95:>8.3f} {max(values):>8.3f} {p50 / raw50:>10.1f}  {goals[mode]}"
        )


if __name__ == "__main__":
    main()
