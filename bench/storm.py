"""Storm: 20 distinct services' signed failure webhooks at once → UpdateService → verified.

Two paths in one run, each on its own 20 services, both against one local Prefect server
and a moto server behind a recording proxy, the receiver a real ``rollback serve``
process. The Prefect server's database is PostgreSQL by default, as in production
(docs/deployment.md): a throwaway cluster (``bench/support/pg.py``) started before the
server and stopped and removed at the end, also when a phase fails or on Ctrl-C.
``--database sqlite`` puts it on SQLite in the run's temp dir instead.

- warm worker — ``rollback serve --mode worker`` creates the flow run Pending with the
  queue's tag; one long-lived ``rollback worker`` hears of it on the server's event
  stream and runs ``rollback_flow`` in-process (issue 12);
- process worker — ``rollback serve --mode deployment``: ``run_deployment`` and a process
  worker (``--limit 4``, 1 s poll) that starts every flow run as a new Python process.

Per service: webhook sent → the proxy sees its ``UpdateService``, and → its audit record
says ``succeeded`` (after stabilize and verify). CPU: user+system time of every process
involved (Prefect server and its database — the PostgreSQL postmaster and its backends —,
worker and its children, receiver; not moto) read from ``/proc/<pid>/stat`` before and
after the storm, divided by the rollbacks that ran. A process's figure includes its
reaped children (cutime/cstime), so a backend that exits stays counted, in the
postmaster's. The "server" share is printed as prefect + postgres. Every phase has a
deadline; a failed phase prints why and the others still run.

``--profile DIR`` (warm path): the worker runs under ``bench/support/profiled.py``
(cProfile in every thread, thread CPU time), profiled over the storm only; it prints
where the worker's CPU goes per rollback and its HTTP requests to the Prefect server by
route, which is what the server's CPU (``/proc/<pid>/stat``, above) is spent on.
Profiling slows the worker: the CPU figures of such a run are not the product's
(measure them without ``--profile``).

    python bench/storm.py [--database {postgresql,sqlite}] [--services 20] [--deadline 180]
                          [--limit 20] [--skip-process] [--json] [--keep-logs DIR]
                          [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import webhook_latency as wl  # noqa: E402
from support import pg  # noqa: E402

BIN = Path(sys.executable).parent
ORG = "storm-org"
CLK = os.sysconf("SC_CLK_TCK")
GOALS = {"p95_s": 10.0, "cpu_s_per_rollback": 0.6}
PROFILER = ROOT / "bench" / "support" / "profiled.py"
DATABASES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
SERVER_PARTS = ("prefect", "postgres")  # the "server" role: Prefect's API and its database


def profiled(out: Path | None, entry: str, cmd: list[str]) -> list[str]:
    """``cmd`` (a console script and its arguments) under the profiler when ``out``."""
    if out is None:
        return cmd
    return [sys.executable, str(PROFILER), str(out), entry, *cmd[1:]]


def profile_signal(pids: list[int], sig: int, outs: list[Path]) -> None:
    """SIGUSR2: start the window; SIGUSR1: write the profiles (waits for the files)."""
    for path in outs:
        Path(str(path) + ".prof").unlink(missing_ok=True)
    for pid in pids:
        os.kill(pid, sig)
    for path in outs:
        prof = Path(str(path) + ".prof")
        wl.wait_for(prof.exists, 120, f"profile {path}")


# -- CPU of a process tree ----------------------------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLK


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of ``roots`` and every live descendant (reaped ones are in cutime)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


# -- the world ------------------------------------------------------------------------------
def write_config(path: Path, names: list[str], mode: str) -> Path:
    from devstack.stack import fleet_config

    data = fleet_config(names)
    env = data["environments"]["staging"]
    env.update(cooldown_s=0, max_auto_per_hour=1000, auto_rollback=True)
    for svc in env["services"].values():
        svc["poll_interval_s"] = 0.1
    data["webhooks"] = {
        "github": {
            "secret_env": "BENCH_GITHUB_SECRET",
            "rules": [
                {"repository": f"{ORG}/{n}", "environment": "staging", "service": n} for n in names
            ],
        },
        "api_token_env": "BENCH_API_TOKEN",
        "mode": mode,
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def seed(config_path: Path, names: list[str]) -> None:
    from devstack import sandbox
    from rollback.config import load_config
    from rollback.runtime import Runtime

    sandbox.seed(services=dict.fromkeys(names, "api"))
    rt = Runtime(load_config(config_path))
    rt.ensure_tables()
    for name in names:
        rt.history.import_many(sandbox.demo_history("staging", name, "api"))


def failure_body(service: str) -> bytes:
    payload = json.loads(wl.failure_body(run_id=time.time_ns()))
    payload["repository"]["full_name"] = f"{ORG}/{service}"
    run = payload["workflow_run"]
    if isinstance(run.get("head_repository"), dict):
        run["head_repository"]["full_name"] = f"{ORG}/{service}"
    return json.dumps(payload).encode()


def send(url: str, secret: str, service: str) -> tuple[str, float, str | None, str]:
    """One signed failure webhook; (service, sent at, audit id, problem); the answer's
    time is kept in ``ANSWERED`` by service."""
    import httpx

    from deployments.signatures import github_signature

    body = failure_body(service)
    headers = {
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": f"storm-{service}-{time.time_ns()}",
        "X-Hub-Signature-256": github_signature(secret, body),
        "Content-Type": "application/json",
    }
    sent = time.time()
    try:
        resp = httpx.post(url + "/webhooks/github", content=body, headers=headers, timeout=60)
    except Exception as exc:  # noqa: BLE001 - a lost request is a result, not a crash
        return service, sent, None, f"{type(exc).__name__} after {time.time() - sent:.1f} s"
    ANSWERED[service] = time.time() - sent
    if resp.status_code != 202:
        return service, sent, None, f"HTTP {resp.status_code}: {resp.text[:200]}"
    return service, sent, resp.json().get("audit_id"), ""


ANSWERED: dict[str, float] = {}


def flow_run_starts(audit_ids: list[str]) -> dict[str, float]:
    """When each request's flow run started (wall clock), by audit id."""
    from prefect import get_client

    wanted, starts = set(audit_ids), {}
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(limit=200):
            audit_id = (run.parameters or {}).get("audit_id")
            if audit_id in wanted and run.start_time is not None:
                starts[audit_id] = run.start_time.timestamp()
    return starts


# -- one path -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bench:
    """What every phase shares: processes, stand-ins, the server's database, the options."""

    procs: list[Any]
    tmp: Path
    api: str
    recorder: Any
    secret: str
    db: pg.Cluster | None  # None: the Prefect server on SQLite
    deadline_s: float
    limit: int = 20
    profile: Path | None = None


@dataclass(frozen=True)
class Storm:
    """One storm: each webhook (service, sent at, audit id, problem), the accepted audit
    ids, CPU seconds spent by process role over the window, the window's length."""

    sent: list[tuple[str, float, str | None, str]]
    ids: list[str]
    cpu: dict[str, float]
    window_s: float


def run_phase(bench: Bench, name: str, names: list[str], mode: str) -> dict[str, Any]:
    """One path: its worker and receiver, one warm-up rollback, idle rates, the storm."""
    from rollback.config import load_config
    from rollback.runtime import Runtime

    spare, storm = names[0], names[1:]
    config = write_config(bench.tmp / f"{name}.json", names, mode)
    profile = bench.profile if name == "warm-worker" else None
    url, roles = start_phase(bench, name, config, mode, profile)
    rt = Runtime(load_config(config))

    # Warm-up: one rollback of a spare service (first imports), not counted.
    _, _, warm_id, problem = send(url, bench.secret, spare)
    if problem:
        raise RuntimeError(f"warm-up webhook: {problem}")
    wl.wait_for(lambda: _final(rt, warm_id), 120, "the warm-up rollback")
    time.sleep(1)  # the warm-up flow run's own end
    idle = idle_rates(roles)
    measured = run_storm(bench, url, storm, roles, rt, profile)
    return {
        "path": name,
        "services": len(storm),
        "accepted": len(measured.ids),
        "problems": [p for *_, p in measured.sent if p][:3],
        **latencies(measured, bench.recorder, rt),
        **cpu_figures(measured, idle),
    }


def start_phase(
    bench: Bench, name: str, config: Path, mode: str, profile: Path | None
) -> tuple[str, dict[str, list[int]]]:
    """The path's worker and receiver; (receiver URL, pids by process role)."""
    import httpx

    from devstack.sandbox import free_port

    env = wl.prefect_env(bench.tmp, bench.db.url if bench.db else None) | {
        "PREFECT_API_URL": bench.api,
        "AWS_ENDPOINT_URL": bench.recorder.url,
        "BENCH_GITHUB_SECRET": bench.secret,
        "BENCH_API_TOKEN": bench.secret[::-1],
    }
    worker_out = profile / "worker" if profile else None
    workers = start_workers(
        name, bench.procs, bench.tmp, bench.api, config, env, bench.limit, worker_out
    )
    port = free_port()
    receiver = wl.spawn(
        bench.procs,
        [str(BIN / "rollback"), "serve", "--config", str(config), "--port", str(port)]
        + ["--mode", mode],
        env,
        bench.tmp / f"{name}-receiver.log",
    )
    url = f"http://127.0.0.1:{port}"
    wl.wait_for(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, 60, "receiver")
    roles = {"prefect": [bench.procs[0].pid]}  # the Prefect server, the first process started
    if bench.db:
        roles["postgres"] = [bench.db.pid]  # the postmaster: every backend is its child
    roles |= {"worker": [w.pid for w in workers], "receiver": [receiver.pid]}
    return url, roles


def _final(rt: Any, audit_id: str | None) -> bool:
    record = rt.audit.get(audit_id) if audit_id else None
    return bool(record and record.status.final)


def run_storm(
    bench: Bench,
    url: str,
    storm: list[str],
    roles: dict[str, list[int]],
    rt: Any,
    profile: Path | None,
) -> Storm:
    """Every webhook at once, then wait (deadline) for every accepted rollback to end."""
    if profile:
        profile_signal(roles["worker"][:1], signal.SIGUSR2, [])
    cpu_before = {role: tree_cpu(pids) for role, pids in roles.items()}
    window_start = time.monotonic()
    with ThreadPoolExecutor(len(storm)) as pool:
        sent = list(pool.map(lambda s: send(url, bench.secret, s), storm))
    stop_at = time.monotonic() + bench.deadline_s
    ids = [audit_id for _, _, audit_id, _ in sent if audit_id]
    while time.monotonic() < stop_at and not all(_final(rt, a) for a in ids):
        time.sleep(0.5)
    time.sleep(1.2)  # flow runs end ~1 s after their last task (Prefect's fixed cost)
    cpu = {role: tree_cpu(pids) - cpu_before[role] for role, pids in roles.items()}
    window = time.monotonic() - window_start
    if profile:
        profile_signal(roles["worker"][:1], signal.SIGUSR1, [profile / "worker"])
    return Storm(sent, ids, cpu, window)


def latencies(measured: Storm, recorder: Any, rt: Any) -> dict[str, Any]:
    """Per service from its webhook: answered, flow run started, UpdateService, verified."""
    from rollback.models import parse_iso

    updated: list[float] = []
    verified: list[float] = []
    answered: list[float] = []
    begun: list[float] = []
    starts = flow_run_starts(measured.ids)
    for service, at, audit_id, _ in measured.sent:
        if service in ANSWERED:
            answered.append(ANSWERED[service])
        if audit_id in starts:
            begun.append(starts[audit_id] - at)
        stamp = recorder.first_update.get(service)
        if stamp is not None:
            updated.append(stamp - at)
        record = rt.audit.get(audit_id) if audit_id else None
        ok = dict(record.transitions).get("succeeded") if record else None
        done = parse_iso(ok) if ok else None
        if done is not None:
            verified.append(done.timestamp() - at)
    return {
        "updated": len(updated),
        "verified": len(verified),
        "p50_s": _q(updated, 0.5),
        "p95_s": _q(updated, 0.95),
        "verified_p50_s": _q(verified, 0.5),
        # Where the time to UpdateService goes: the receiver's answer, the flow run's start.
        "answered_p50_s": _q(answered, 0.5),
        "answered_p95_s": _q(answered, 0.95),
        "started_p50_s": _q(begun, 0.5),
        "started_p95_s": _q(begun, 0.95),
        "verified_p95_s": _q(verified, 0.95),
    }


def cpu_figures(measured: Storm, idle: dict[str, float]) -> dict[str, Any]:
    """CPU per rollback by process role ("server" is prefect + postgres, also given split)
    and the idle rates."""
    ran = max(len(measured.ids), 1)
    cpu = sum(measured.cpu.values())
    return {
        "cpu_s": round(cpu, 2),
        "cpu_s_per_rollback": round(cpu / ran, 3),
        "cpu_s_per_rollback_by_process": {
            k: round(v / ran, 3) for k, v in _by_role(measured.cpu).items()
        },
        "server_cpu_s_per_rollback": {
            k: round(v / ran, 3) for k, v in _server_parts(measured.cpu).items()
        },
        # What the processes spend with nothing to do (server services, the worker's
        # websocket and requeue sweeps), times the storm's duration: part of the figure
        # above that a faster storm would shrink.
        "idle_cpu_s_per_s": {k: round(v, 4) for k, v in _by_role(idle).items()},
        "idle_server_cpu_s_per_s": {k: round(v, 4) for k, v in _server_parts(idle).items()},
        "idle_cpu_s_per_rollback": round(sum(idle.values()) * measured.window_s / ran, 3),
        "window_s": round(measured.window_s, 1),
    }


def _by_role(parts: dict[str, float]) -> dict[str, float]:
    """By process role: the Prefect server and its database summed as "server"."""
    server = sum(v for k, v in parts.items() if k in SERVER_PARTS)
    return {"server": server} | {k: v for k, v in parts.items() if k not in SERVER_PARTS}


def _server_parts(parts: dict[str, float]) -> dict[str, float]:
    return {k: parts[k] for k in SERVER_PARTS if k in parts}


def idle_rates(roles: dict[str, list[int]], seconds: float = 6) -> dict[str, float]:
    """CPU seconds per second each process spends with no request in flight."""
    before = {role: tree_cpu(pids) for role, pids in roles.items()}
    time.sleep(seconds)
    return {role: (tree_cpu(pids) - before[role]) / seconds for role, pids in roles.items()}


def start_workers(
    name: str,
    procs: list[Any],
    tmp: Path,
    api: str,
    config: Path,
    env: dict[str, str],
    limit: int,
    profile_out: Path | None = None,
) -> list[Any]:

    if name == "warm-worker":
        cmd = [str(BIN / "rollback"), "worker", "--config", str(config), "--limit", str(limit)]
        cmd = profiled(profile_out, "deployments.cli.main:main", cmd)
        worker = wl.spawn(procs, [*cmd, "--health-interval", "0"], env, tmp / f"{name}.log")
        wl.wait_listening(worker, tmp / f"{name}.log")
        return [worker]
    from tests.functional.test_webhooks import _deploy_rollback_auto

    _deploy_rollback_auto(api, "storm-pool")
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", "storm-pool", "--limit", "4"]
    worker_env = env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
    return [wl.spawn(procs, cmd, worker_env, tmp / f"{name}.log")]


def _q(values: list[float], q: float) -> float | None:
    return round(wl.percentile(values, q), 3) if values else None


# -- main -----------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database",
        choices=sorted(DATABASES),
        default="postgresql",
        help="the Prefect server's database (default: a throwaway PostgreSQL cluster)",
    )
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--deadline", type=float, default=180, help="seconds per phase")
    parser.add_argument("--skip-process", action="store_true", help="warm path only")
    parser.add_argument(
        "--limit", type=int, default=20, help="rollbacks a warm worker runs at once"
    )
    parser.add_argument("--json", action="store_true", help="last line: JSON summary")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile the warm worker over the storm; write the profile here",
    )
    args = parser.parse_args()
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    args = parse_args()
    os.environ.update(wl.BENCH_ENV)
    phases = [("warm-worker", "worker")]
    if not args.skip_process:
        phases.append(("process-worker", "deployment"))
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with wl.prefect_server(args.database) as server:
        os.environ["PREFECT_API_URL"] = server.api
        results = run_phases(args, phases, server.procs, server.tmp, server.api, server.db)
        if args.keep_logs:
            keep_logs(args.keep_logs, server.tmp, server.db)
    report(results, args.services, time.monotonic() - t0, load, args.database)
    if args.profile and "error" not in results.get("warm-worker", {"error": 1}):
        ran = results["warm-worker"]["accepted"]
        run_profiler_report(args.profile / "worker", ran)
    if args.json:
        print(json.dumps(summary(results, args.services, args.database)))


def run_phases(
    args: argparse.Namespace,
    phases: list[tuple[str, str]],
    procs: list[Any],
    tmp: Path,
    api: str,
    db: pg.Cluster | None,
) -> dict[str, dict[str, Any]]:
    """moto behind the recording proxy, every fleet seeded, then each phase in turn."""
    from devstack import sandbox

    secret = os.urandom(24).hex()
    n = args.services
    results: dict[str, dict[str, Any]] = {}
    with sandbox.moto_server() as moto:
        recorder = wl.Recorder(moto)
        _track_services(recorder)
        os.environ["AWS_ENDPOINT_URL"] = recorder.url
        fleets = {name: [f"{name[:4]}-{k:02d}" for k in range(0, n + 1)] for name, _ in phases}
        everyone = [s for names in fleets.values() for s in names]
        seed(write_config(tmp / "all.json", everyone, "worker"), everyone)
        bench = Bench(
            procs, tmp, api, recorder, secret, db, args.deadline, args.limit, args.profile
        )
        for name, mode in phases:
            try:
                results[name] = run_phase(bench, name, fleets[name], mode)
            except Exception as exc:  # noqa: BLE001 - report it, run the next phase
                results[name] = {"path": name, "error": f"{type(exc).__name__}: {exc}"}
        recorder.close()
    return results


def keep_logs(out: Path, tmp: Path, db: pg.Cluster | None) -> None:
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, out / log.name)
    if db:
        shutil.copy(db.log, out / "postgres.log")


def summary(results: dict[str, dict[str, Any]], n: int, database: str) -> dict[str, Any]:
    """The JSON summary line: the warm path's figures and the server's database."""
    warm = results.get("warm-worker", {})
    return {
        "services": n,
        "updated": warm.get("updated", 0),
        "verified": warm.get("verified", 0),
        "p50_s": warm.get("p50_s"),
        "p95_s": warm.get("p95_s"),
        "cpu_s_per_rollback": warm.get("cpu_s_per_rollback"),
        "path": "warm-worker",
        "database": database,
    }


def run_profiler_report(out: Path, rollbacks: int) -> None:
    import subprocess

    cmd = [sys.executable, str(PROFILER), "--report", str(out), "--rollbacks", str(rollbacks)]
    print(subprocess.run(cmd, capture_output=True, text=True, check=False).stdout)


def _track_services(recorder: Any) -> None:
    """Note the first UpdateService per service: wrap the proxy's handler."""
    recorder.first_update = {}
    recorder.server.handle_error = lambda *_: None  # moto gone at the end: no tracebacks
    handler = recorder.server.RequestHandlerClass
    forward = handler._forward

    def _forward(h: Any) -> None:
        if h.headers.get("X-Amz-Target", "").endswith(".UpdateService"):
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length) if length else b""
            service = str(json.loads(body or b"{}").get("service", "")).rsplit("/", 1)[-1]
            recorder.first_update.setdefault(service, time.time())
            h.rfile = _Replay(body, h.rfile)
        forward(h)

    handler._forward = _forward
    for verb in ("do_GET", "do_POST", "do_PUT", "do_DELETE", "do_HEAD"):
        setattr(handler, verb, _forward)


class _Replay:
    """A request body already read, handed to the proxy's forwarder again."""

    def __init__(self, body: bytes, rest: Any) -> None:
        self._body, self._rest = body, rest

    def read(self, size: int = -1) -> bytes:
        if self._body:
            out, self._body = self._body, b""
            return out
        return bytes(self._rest.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rest, name)


def report(
    results: dict[str, dict[str, Any]], n: int, elapsed: float, load: float, database: str
) -> None:
    print(
        f"storm: {n} services' failure webhooks at once, Prefect server on "
        f"{DATABASES[database]} ({elapsed:.0f} s in all; "
        f"load average {load:.1f} at start on {os.cpu_count()} cores)"
    )
    head = f"{'path':<15} {'updated':>8} {'verified':>9} {'p50 s':>7} {'p95 s':>7}"
    print(f"{head} {'verif p95':>10} {'CPU s/rollback':>15}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<15} FAILED: {r['error']}")
        else:
            report_phase(name, r)
    report_goals(results, n)


def report_phase(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:<15} {r['updated']:>4}/{r['services']:<3} {r['verified']:>5}/{r['services']:<3}"
        f" {_f(r['p50_s']):>7} {_f(r['p95_s']):>7} {_f(r['verified_p95_s']):>10}"
        f" {_f(r['cpu_s_per_rollback']):>15}"
        + (f"  problems: {r['problems']}" if r["problems"] else "")
    )
    print(
        f"{'':<15} stages p50 / p95: receiver answered {_f(r['answered_p50_s'])} / "
        f"{_f(r['answered_p95_s'])} s, flow run started {_f(r['started_p50_s'])} / "
        f"{_f(r['started_p95_s'])} s, UpdateService {_f(r['p50_s'])} / {_f(r['p95_s'])} s"
    )
    split = _split(r["cpu_s_per_rollback_by_process"], r["server_cpu_s_per_rollback"], ".2f")
    print(f"{'':<15} CPU s per rollback by process: {split}")
    rates = _split(r["idle_cpu_s_per_s"], r["idle_server_cpu_s_per_s"], ".3f")
    print(
        f"{'':<15} idle CPU s/s: {rates}; over the {r['window_s']} s storm that is "
        f"{r['idle_cpu_s_per_rollback']:.2f} s per rollback of the figure above"
    )


def _split(by_role: dict[str, float], server: dict[str, float], fmt: str) -> str:
    """``server 0.34 (prefect 0.28 + postgres 0.06), worker 0.20, receiver 0.03``."""
    out = []
    for role, value in by_role.items():
        text = f"{role} {value:{fmt}}"
        if role == "server" and len(server) > 1:
            text += " (" + " + ".join(f"{k} {v:{fmt}}" for k, v in server.items()) + ")"
        out.append(text)
    return ", ".join(out)


def report_goals(results: dict[str, dict[str, Any]], n: int) -> None:
    warm, proc = results.get("warm-worker", {}), results.get("process-worker", {})
    if warm.get("p95_s") is not None:
        print(
            f"goal p95 ≤ {GOALS['p95_s']:g} s, {n}/{n} updated and verified: "
            f"{_met(warm['p95_s'] <= GOALS['p95_s'] and warm['verified'] == n)} "
            f"(p95 {warm['p95_s']} s, {warm['verified']}/{n} verified)"
        )
        cpu = warm["cpu_s_per_rollback"]
        print(
            f"goal CPU ≤ {GOALS['cpu_s_per_rollback']} s per rollback: "
            f"{_met(cpu <= GOALS['cpu_s_per_rollback'])} ({cpu} s)"
        )
    if warm.get("p95_s") and proc.get("p95_s"):
        print(
            f"process worker / warm worker: p95 {proc['p95_s'] / warm['p95_s']:.1f}×, "
            f"CPU per rollback {proc['cpu_s_per_rollback'] / max(warm['cpu_s_per_rollback'], 1e-9):.1f}×"
        )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
