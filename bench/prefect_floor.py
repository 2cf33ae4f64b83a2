"""Prefect's own CPU floor per flow run on each long-lived execution path (issue 12).

``rollback worker`` (flows/background.py) runs each automatic rollback on a flow run the
receiver created ``Pending`` with a tag: it listens to the Prefect server's event stream
(``prefect.flow-run.Pending`` related to ``prefect.tag.<tag>``) and runs the flow on that
very run (``run_flow``) in a thread. The first design used Prefect background tasks
(``task.delay()`` served by ``prefect.task_worker.serve``, the task running the flow on
the Pending run), a second run per rollback. The design rests on what Prefect alone
costs on each path; this measures it with no work of ours: N runs (default 20) of an
empty flow with T no-op task runs (default 6, each logging one line), all submitted at
once, on one local Prefect server, in three phases:

  (a) in-process — a long-lived process calls the flow N times at once, in threads;
  (b) event stream — a long-lived listener as in flows/background.py; this process
      creates N Pending tagged flow runs;
  (c) background task — a long-lived ``prefect.task_worker.serve`` process; this process
      creates each Pending flow run and ``.delay(run_id)``s the task that runs it.

Per phase, after one warm-up run (first imports, not counted): CPU seconds per run of
the Prefect server (with its database's processes on PostgreSQL), of the worker process
(the caller, listener or task worker; /proc, children included), of this process while
it submits (``time.process_time()``), their total; the wall time from the first
submission to the last submission's return, to the first run's start and to the last
run's end (the server's timestamps). The windows also hold what the processes spend idle
(printed separately: the server's loop services, the listener's socket) and one run
query every half second while this process waits. The flows log at INFO, Prefect's
default (``--log-level``), so each task's line reaches the server's log API. On SQLite,
concurrent writes can make the server answer 503 and Prefect's client retry after ~2 s,
then ~4 s: that shows in the wall times far more than in the CPU. Each phase has a
deadline; a failed phase prints why and the others still run. Everything it starts, it
stops.

    python bench/prefect_floor.py [--runs 20] [--tasks 6] [--deadline 120]
                                  [--database {sqlite,postgresql}] [--log-level INFO]
                                  [--json] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import webhook_latency as wl  # noqa: E402
from storm import tree_cpu  # noqa: E402

FLOWS = ROOT / "bench" / "support" / "floor_flows.py"
PHASES = ("in-process", "event-stream", "background-task")
LISTEN_TAG = "floor-queue"  # the listener's tag, as QUEUE_TAG in flows/background.py
GOAL_CPU_S = 0.6  # issue 12: CPU per automatic rollback, all processes (bench/storm.py)
IDLE_S = 5.0
SETTLE_S = 1.5  # a flow run's process-side end lasts ~1 s after its final state


@dataclass(frozen=True)
class Bench:
    """What every phase shares."""

    procs: list[Any]
    tmp: Path
    env: dict[str, str]  # a long-lived process's environment
    server: list[int]  # the Prefect server (and the PostgreSQL postmaster)
    runs: int
    tasks: int
    deadline_s: float


Submit = Callable[[Any, str, int], None]  # (client, tag, how many)


# -- the phases' long-lived processes -----------------------------------------------------
def start_worker(bench: Bench, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    """``floor_flows.py ARGS`` until it prints READY (stdin a pipe for ``in-process``)."""
    log = bench.tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, str(FLOWS), *args],
        env=bench.env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    bench.procs.append(proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-800:]}")
        return b"READY" in log.read_bytes()

    _wait(ready, 90, f"the {name} process")
    return proc


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``wl.wait_for`` that lets a check's RuntimeError (a dead process) through."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def stop(bench: Bench, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    bench.procs.remove(proc)


def in_process(bench: Bench) -> tuple[subprocess.Popen[bytes], Submit]:
    """(a) the caller; submitting is a line on its stdin."""
    proc = start_worker(bench, "in-process", ["in-process", str(bench.runs)])

    def submit(client: Any, tag: str, k: int) -> None:
        assert proc.stdin is not None
        proc.stdin.write(f"RUN {k} {tag} {bench.tasks}\n".encode())
        proc.stdin.flush()

    return proc, submit


def event_stream(bench: Bench) -> tuple[subprocess.Popen[bytes], Submit]:
    """(b) the listener; submitting is creating Pending flow runs with its tag."""
    from prefect.states import Pending
    from support.floor_flows import floor_flow

    proc = start_worker(bench, "event-stream", ["listen", LISTEN_TAG, str(bench.runs)])

    def submit(client: Any, tag: str, k: int) -> None:
        for _ in range(k):
            client.create_flow_run(
                floor_flow,
                parameters={"n": bench.tasks},
                state=Pending(),
                tags=[LISTEN_TAG, tag],
            )

    return proc, submit


def background_task(bench: Bench) -> tuple[subprocess.Popen[bytes], Submit]:
    """(c) the task worker; submitting is a Pending flow run and ``.delay(its id)``."""
    import httpx
    from prefect.states import Pending
    from support.floor_flows import floor_background, floor_flow

    proc = start_worker(bench, "background-task", ["serve", str(bench.runs)])
    api = bench.env["PREFECT_API_URL"]
    _wait(
        lambda: httpx.post(api + "/task_workers/filter", json={}, timeout=5).json(),
        60,
        "the task worker to subscribe",
    )

    def submit(client: Any, tag: str, k: int) -> None:
        for _ in range(k):
            run = client.create_flow_run(
                floor_flow, parameters={"n": bench.tasks}, state=Pending(), tags=[tag]
            )
            floor_background.delay(str(run.id))

    return proc, submit


STARTERS: dict[str, Callable[[Bench], tuple[subprocess.Popen[bytes], Submit]]] = {
    "in-process": in_process,
    "event-stream": event_stream,
    "background-task": background_task,
}


# -- one phase ----------------------------------------------------------------------------
def run_phase(bench: Bench, name: str) -> dict[str, Any]:
    """The phase's process, a warm-up run, idle rates, then N runs at once."""
    from prefect import get_client

    proc, submit = STARTERS[name](bench)
    try:
        with get_client(sync_client=True) as client:
            submit(client, f"{name}-warm", 1)
            final_runs(client, f"{name}-warm", 1, bench.deadline_s)
            time.sleep(2 * SETTLE_S)  # its end, and the server's handling of its events
            roles = {"server": bench.server, "worker": [proc.pid]}
            idle = idle_rates(roles)
            return measure(bench, name, client, submit, roles) | {"idle": idle}
    finally:
        stop(bench, proc)


def measure(
    bench: Bench, name: str, client: Any, submit: Submit, roles: dict[str, list[int]]
) -> dict[str, Any]:
    """CPU per run by role and the wall times of N runs submitted at once."""
    n, tag = bench.runs, f"{name}-run"
    before = {role: tree_cpu(pids) for role, pids in roles.items()}
    start, began = time.time(), time.monotonic()
    c0 = time.process_time()
    submit(client, tag, n)
    submitter, submitted = time.process_time() - c0, time.monotonic() - began
    runs = final_runs(client, tag, n, bench.deadline_s)
    time.sleep(SETTLE_S)
    cpu: dict[str, float | None] = {
        role: (tree_cpu(pids) - before[role]) / n for role, pids in roles.items()
    }
    if name == "in-process":
        cpu["submitter"] = None  # the caller submits: its CPU is in "worker"
    else:
        cpu["submitter"] = submitter / n
    starts = [r.start_time.timestamp() for r in runs if r.start_time]
    ends = [r.end_time.timestamp() for r in runs if r.end_time]
    return {
        **cpu,
        "total": sum(v for v in cpu.values() if v is not None),
        "submit_s": submitted,
        "first_start_s": min(starts) - start if starts else None,
        "all_final_s": max(ends) - start if ends else None,
        "completed": sum(1 for r in runs if r.state and r.state.is_completed()),
        "window_s": time.monotonic() - began,
    }


def final_runs(client: Any, tag: str, n: int, timeout: float) -> list[Any]:
    """The ``n`` flow runs tagged ``tag`` once all are final (one query every 0.5 s)."""
    from collections import Counter

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    flt = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
    deadline = time.monotonic() + timeout
    runs: list[Any] = []
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(flow_run_filter=flt, limit=n + 1)
        if len(runs) >= n and all(r.state and r.state.is_final() for r in runs):
            return list(runs)
        time.sleep(0.5)
    states = Counter(r.state.name if r.state else "no state" for r in runs)
    seen = ", ".join(f"{count} {name}" for name, count in states.most_common())
    raise TimeoutError(f"{tag}: not all {n} flow runs final after {timeout:g} s ({seen})")


def idle_rates(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds per second each role spends with no run in flight."""
    before = {role: tree_cpu(pids) for role, pids in roles.items()}
    time.sleep(IDLE_S)
    return {role: (tree_cpu(pids) - before[role]) / IDLE_S for role, pids in roles.items()}


def run_phases(bench: Bench) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in PHASES:
        try:
            results[name] = run_phase(bench, name)
        except Exception as exc:  # noqa: BLE001 - print it, run the next phase
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"phase {name} failed: {results[name]['error']}", flush=True)
    return results


# -- main ---------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="flow runs per phase")
    parser.add_argument("--tasks", type=int, default=6, help="task runs per flow run")
    parser.add_argument("--deadline", type=float, default=120, help="seconds per wait")
    parser.add_argument(
        "--database", choices=["sqlite", "postgresql"], default="sqlite", help="the server's"
    )
    parser.add_argument(
        "--log-level", default="INFO", help="PREFECT_LOGGING_LEVEL of the flows' processes"
    )
    parser.add_argument("--json", action="store_true", help="last line: JSON summary")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with wl.prefect_server(args.database) as server:
        tmp, procs, db = server.tmp, server.procs, server.db
        env = wl.prefect_env(tmp, db.url if db else None) | {
            "PREFECT_API_URL": server.api,
            "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "storage"),  # .delay()'s parameters
            "PREFECT_LOGGING_LEVEL": args.log_level,
        }
        # This process submits: the same server and storage, set before Prefect is
        # imported; its own logging stays at BENCH_ENV's WARNING.
        os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
        os.environ.update(wl.BENCH_ENV)
        server = [procs[0].pid] + ([db.pid] if db else [])
        bench = Bench(procs, tmp, env, server, args.runs, args.tasks, args.deadline)
        results = run_phases(bench)
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
    report(results, args, load, time.monotonic() - t0)
    if args.json:
        print(json.dumps(summary(results, args)))


# -- output -------------------------------------------------------------------------------
def report(
    results: dict[str, dict[str, Any]], args: argparse.Namespace, load: float, elapsed: float
) -> None:
    end_load = os.getloadavg()[0]
    print(
        f"Prefect's floor: {args.runs} runs at once of an empty flow with {args.tasks} task "
        f"runs, per path; {args.database}, logs at {args.log_level} "
        f"({elapsed:.0f} s in all; load {load:.2f} → {end_load:.2f})"
    )
    cpu = ("server", "worker", "submitter", "total")
    head = ("phase", *cpu, "submit s", "1st start s", "all final s")
    print(f"{head[0]:<16}" + "".join(f"{h:>12}" for h in head[1:]) + "   completed")
    for name in PHASES:
        r = results[name]
        if "error" in r:
            print(f"{name:<16} failed: {r['error']}")
            continue
        cells = [r[k] for k in cpu]
        row = "".join(f"{_f(v, 3):>12}" for v in cells)
        walls = ("submit_s", "first_start_s", "all_final_s")
        row += "".join(f"{_f(r[k], 2):>12}" for k in walls)
        print(f"{name:<16}{row}   {r['completed']}/{args.runs}")
    print(
        "CPU-s per run; worker: the in-process caller, the listener, the task worker; "
        "wall s from the first submission: all submitted, first run started, last ended."
    )
    for name in PHASES:
        r = results[name]
        if "error" not in r:
            idle = sum(r["idle"].values()) * r["window_s"] / args.runs
            print(
                f"  {name}: idle server {r['idle']['server']:.3f} + worker "
                f"{r['idle']['worker']:.3f} CPU-s/s over the {r['window_s']:.1f} s window "
                f"= {idle:.3f} CPU-s per run of its total"
            )
    report_ratio(results)


def report_ratio(results: dict[str, dict[str, Any]]) -> None:
    total = {name: results[name].get("total") for name in PHASES}
    stream, background = total["event-stream"], total["background-task"]
    if stream and background:
        print(f"ratio background-task / event-stream total: {background / stream:.2f}")
    goal = GOAL_CPU_S
    left = ", ".join(
        f"{name} {goal - value:.2f}" for name, value in total.items() if value is not None
    )
    left = left or "no phase measured"
    print(
        f"storm goal (issue 12): CPU ≤ {goal} s per rollback, all processes; "
        f"what each path's floor leaves for our own work (CPU-s): {left}"
    )


def summary(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    totals = {name: results[name].get("total") for name in PHASES}
    stream, background = totals["event-stream"], totals["background-task"]
    return {
        "runs": args.runs,
        "tasks": args.tasks,
        "database": args.database,
        **{f"{name.replace('-', '_')}_cpu_s_per_run": _r(v) for name, v in totals.items()},
        "ratio_background_to_event_stream": (
            round(background / stream, 2) if stream and background else None
        ),
        "goal_cpu_s_per_rollback": GOAL_CPU_S,
    }


def _f(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()
