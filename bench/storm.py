"""Storm: 20 distinct services' signed failure webhooks at once → UpdateService → verified.

Two paths in one run, each on its own 20 services, both against one local Prefect server
(SQLite) and a moto server behind a recording proxy, the receiver a real
``rollback serve`` process:

- warm worker — ``rollback serve --mode worker`` queues a background task run; one
  long-lived ``rollback worker`` runs ``rollback_flow`` in-process (issue 12);
- process worker — ``rollback serve --mode deployment``: ``run_deployment`` and a process
  worker (``--limit 4``, 1 s poll) that starts every flow run as a new Python process.

Per service: webhook sent → the proxy sees its ``UpdateService``, and → its audit record
says ``succeeded`` (after stabilize and verify). CPU: user+system time of every process
involved (Prefect server, worker and its children, receiver; not moto) read from
``/proc/<pid>/stat`` before and after the storm, divided by the rollbacks that ran.
Every phase has a deadline; a failed phase prints why and the others still run.

``--profile DIR`` (warm path): the worker runs under ``bench/support/profiled.py``
(cProfile in every thread, thread CPU time), profiled over the storm only; it prints
where the worker's CPU goes per rollback and its HTTP requests to the Prefect server by
route, which is what the server's CPU (``/proc/<pid>/stat``, above) is spent on.
Profiling slows the worker: the CPU figures of such a run are not the product's
(measure them without ``--profile``).

    python bench/storm.py [--services 20] [--deadline 180] [--skip-process] [--json]
                          [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import webhook_latency as wl  # noqa: E402

BIN = Path(sys.executable).parent
ORG = "storm-org"
CLK = os.sysconf("SC_CLK_TCK")
GOALS = {"p95_s": 10.0, "cpu_s_per_rollback": 0.6}
PROFILER = ROOT / "bench" / "support" / "profiled.py"


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
        wl.wait_for(lambda p=path: Path(str(p) + ".prof").exists(), 120, f"profile {path}")


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
def run_phase(
    name: str,
    procs: list[Any],
    tmp: Path,
    api: str,
    recorder: Any,
    secret: str,
    names: list[str],
    mode: str,
    deadline_s: float,
    limit: int = 20,
    profile: Path | None = None,
) -> dict[str, Any]:
    import httpx

    from devstack.sandbox import free_port
    from rollback.config import load_config
    from rollback.models import parse_iso
    from rollback.runtime import Runtime

    spare, storm = names[0], names[1:]
    config = write_config(tmp / f"{name}.json", names, mode)
    env = wl.prefect_env(tmp) | {
        "PREFECT_API_URL": api,
        "AWS_ENDPOINT_URL": recorder.url,
        "BENCH_GITHUB_SECRET": secret,
        "BENCH_API_TOKEN": secret[::-1],
    }
    profile = profile if name == "warm-worker" else None
    worker_out = profile / "worker" if profile else None
    workers = start_workers(name, procs, tmp, api, config, env, limit, worker_out)
    port = free_port()
    receiver = wl.spawn(
        procs,
        [str(BIN / "rollback"), "serve", "--config", str(config), "--port", str(port)]
        + ["--mode", mode],
        env,
        tmp / f"{name}-receiver.log",
    )
    url = f"http://127.0.0.1:{port}"
    wl.wait_for(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, 60, "receiver")
    rt = Runtime(load_config(config))
    roles = {
        "server": [procs[0].pid],
        "worker": [w.pid for w in workers],
        "receiver": [receiver.pid],
    }

    def final(audit_id: str | None) -> bool:
        record = rt.audit.get(audit_id) if audit_id else None
        return bool(record and record.status.final)

    # Warm-up: one rollback of a spare service (first imports), not counted.
    _, _, warm_id, problem = send(url, secret, spare)
    if problem:
        raise RuntimeError(f"warm-up webhook: {problem}")
    wl.wait_for(lambda: final(warm_id), 120, "the warm-up rollback")
    time.sleep(1)  # the warm-up flow run's own end
    idle = idle_rates(roles)
    if profile:
        profile_signal([workers[0].pid], signal.SIGUSR2, [])
    cpu_before = {role: tree_cpu(pids) for role, pids in roles.items()}
    window_start = time.monotonic()
    with ThreadPoolExecutor(len(storm)) as pool:
        sent = list(pool.map(lambda s: send(url, secret, s), storm))
    stop_at = time.monotonic() + deadline_s
    ids = [audit_id for _, _, audit_id, _ in sent if audit_id]
    while time.monotonic() < stop_at and not all(final(a) for a in ids):
        time.sleep(0.5)
    time.sleep(1.2)  # flow runs end ~1 s after their last task (Prefect's fixed cost)
    by_role = {role: tree_cpu(pids) - cpu_before[role] for role, pids in roles.items()}
    cpu = sum(by_role.values())
    window = time.monotonic() - window_start
    if profile:
        profile_signal([workers[0].pid], signal.SIGUSR1, [profile / "worker"])
    updated, verified, answered, begun = [], [], [], []
    starts = flow_run_starts(ids)
    for service, at, audit_id, _ in sent:
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
    ran = max(len(ids), 1)
    return {
        "path": name,
        "services": len(storm),
        "accepted": len(ids),
        "problems": [p for *_, p in sent if p][:3],
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
        "cpu_s": round(cpu, 2),
        "cpu_s_per_rollback": round(cpu / ran, 3),
        "cpu_s_per_rollback_by_process": {k: round(v / ran, 3) for k, v in by_role.items()},
        # What the processes spend with nothing to do (server services, the worker's
        # websocket and requeue sweeps), times the storm's duration: part of the figure
        # above that a faster storm would shrink.
        "idle_cpu_s_per_s": {k: round(v, 4) for k, v in idle.items()},
        "idle_cpu_s_per_rollback": round(sum(idle.values()) * window / ran, 3),
        "window_s": round(window, 1),
    }


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
    import httpx

    if name == "warm-worker":
        cmd = [str(BIN / "rollback"), "worker", "--config", str(config), "--limit", str(limit)]
        cmd = profiled(profile_out, "deployments.cli.main:main", cmd)
        worker = wl.spawn(procs, [*cmd, "--health-interval", "0"], env, tmp / f"{name}.log")

        def subscribed() -> bool:
            resp = httpx.post(api + "/task_workers/filter", json={}, timeout=5)
            return bool(resp.json())

        wl.wait_for(subscribed, 60, "the rollback worker to subscribe")
        return [worker]
    from tests.functional.test_webhooks import _deploy_rollback_auto

    _deploy_rollback_auto(api, "storm-pool")
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", "storm-pool", "--limit", "4"]
    worker_env = env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
    return [wl.spawn(procs, cmd, worker_env, tmp / f"{name}.log")]


def _q(values: list[float], q: float) -> float | None:
    return round(wl.percentile(values, q), 3) if values else None


# -- main -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    os.environ.update(wl.BENCH_ENV)
    from devstack import sandbox

    secret = os.urandom(24).hex()
    n = args.services
    phases = [("warm-worker", "worker")]
    if not args.skip_process:
        phases.append(("process-worker", "deployment"))
    results: dict[str, dict[str, Any]] = {}
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name, wl.processes() as procs:
        tmp = Path(tmp_name)
        api = wl.start_prefect_server(procs, tmp)
        os.environ["PREFECT_API_URL"] = api
        with sandbox.moto_server() as moto:
            recorder = wl.Recorder(moto)
            _track_services(recorder)
            os.environ["AWS_ENDPOINT_URL"] = recorder.url
            fleets = {name: [f"{name[:4]}-{k:02d}" for k in range(0, n + 1)] for name, _ in phases}
            everyone = [s for names in fleets.values() for s in names]
            seed(write_config(tmp / "all.json", everyone, "worker"), everyone)
            for name, mode in phases:
                names = fleets[name]
                try:
                    results[name] = run_phase(
                        name,
                        procs,
                        tmp,
                        api,
                        recorder,
                        secret,
                        names,
                        mode,
                        args.deadline,
                        args.limit,
                        args.profile,
                    )
                except Exception as exc:  # noqa: BLE001 - report it, run the next phase
                    results[name] = {"path": name, "error": f"{type(exc).__name__}: {exc}"}
            recorder.close()
        if args.keep_logs:
            import shutil

            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
    report(results, n, time.monotonic() - t0, load)
    if args.profile and "error" not in results.get("warm-worker", {"error": 1}):
        ran = results["warm-worker"]["accepted"]
        run_profiler_report(args.profile / "worker", ran)
    if args.json:
        warm = results.get("warm-worker", {})
        print(
            json.dumps(
                {
                    "services": n,
                    "updated": warm.get("updated", 0),
                    "verified": warm.get("verified", 0),
                    "p50_s": warm.get("p50_s"),
                    "p95_s": warm.get("p95_s"),
                    "cpu_s_per_rollback": warm.get("cpu_s_per_rollback"),
                    "path": "warm-worker",
                }
            )
        )


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


def report(results: dict[str, dict[str, Any]], n: int, elapsed: float, load: float) -> None:
    print(
        f"storm: {n} services' failure webhooks at once ({elapsed:.0f} s in all; "
        f"load average {load:.1f} at start on {os.cpu_count()} cores)"
    )
    head = f"{'path':<15} {'updated':>8} {'verified':>9} {'p50 s':>7} {'p95 s':>7}"
    print(f"{head} {'verif p95':>10} {'CPU s/rollback':>15}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<15} FAILED: {r['error']}")
            continue
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
        split = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_s_per_rollback_by_process"].items())
        print(f"{'':<15} CPU s per rollback by process: {split}")
        rates = ", ".join(f"{k} {v:.3f}" for k, v in r["idle_cpu_s_per_s"].items())
        print(
            f"{'':<15} idle CPU s/s: {rates}; over the {r['window_s']} s storm that is "
            f"{r['idle_cpu_s_per_rollback']:.2f} s per rollback of the figure above"
        )
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
