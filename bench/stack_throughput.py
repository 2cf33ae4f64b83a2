"""How fast the local stack drains a burst of rollback requests, and what a second
worker buys.

On 127.0.0.1 only: the stack (devstack/stack/) with the moto sandbox seeded with
10 ECS services, the receiver in deployment mode, rollback-auto on process workers
(each limited to BENCH_WORKER_LIMIT concurrent runs). For SQLite and PostgreSQL, with 1
and then 2 workers, in one run: 50 requests (5 per service) posted to the receiver at
once; measured: time to drain (first request to last run ended), runs per minute, and
the p50/p95 from a service's requests to its UpdateService (seen by polling ECS every
0.1 s). Prints the 2-workers/1-worker throughput ratio on PostgreSQL (goal >= 1.6).

Bounded: every phase has a deadline; the stacks are stopped whatever happens.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from devstack.sandbox import CLUSTER, free_port  # noqa: E402
from devstack.stack import Options, Stack, down, seed, up  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))
SERVICES = int(os.environ.get("BENCH_SERVICES", "10"))
WORKER_LIMIT = int(os.environ.get("BENCH_WORKER_LIMIT", "4"))
# 4 phases x 100 s + 2 stack starts: the whole run stays under ~8 minutes.
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT_S", "100"))
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Result:
    database: str
    workers: int
    drained_s: float
    runs: int
    states: dict[str, int]
    update_latencies: list[float]
    intake_errors: int = 0
    run_s: float = 0.0  # median flow run duration (start to end)

    @property
    def per_minute(self) -> float:
        return self.runs / self.drained_s * 60

    def row(self) -> str:
        lat = sorted(self.update_latencies)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.states.items()))
        if self.intake_errors:
            states += f"; {self.intake_errors} requests not started (receiver error/timeout)"
        states += f"; median run {self.run_s:.1f}s"
        return (
            f"| {self.database:<10} | {self.workers} | {self.drained_s:7.1f} | "
            f"{self.per_minute:6.1f} | {p50:5.1f} | {p95:5.1f} | {len(lat):3d} | {states} |"
        )


class UpdateWatcher:
    """Polls the ECS services every 0.1 s; records when each one's task definition changes."""

    def __init__(self, names: list[str]) -> None:
        import boto3

        self.ecs = boto3.client("ecs")
        self.names = names
        self.changes: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._last = self._snapshot()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[str, str]:
        found = self.ecs.describe_services(cluster=CLUSTER, services=self.names)["services"]
        return {s["serviceName"]: s["taskDefinition"] for s in found}

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            try:
                current = self._snapshot()
            except Exception:  # noqa: BLE001 - moto going away at the end of a phase
                return
            for name, task_def in current.items():
                if task_def != self._last.get(name):
                    self.changes.append((name, now))
            self._last = current

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def drain(stack: Stack, database: str, workers: int) -> Result:
    names = [f"svc-{i:02d}" for i in range(1, SERVICES + 1)]
    requests = [(names[i % SERVICES], f"bench-{database}-{workers}-{i}") for i in range(REQUESTS)]
    watcher = UpdateWatcher(names)
    sent: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {stack.token()}"}
    with httpx.Client(base_url=stack.receiver_url, headers=headers, timeout=120) as client:

        def post(item: tuple[str, str]) -> str | None:
            service, key = item
            sent.setdefault(service, time.monotonic())
            body = {
                "environment": "staging",
                "service": service,
                "rollback_type": "ecs",
                "user_id": "bench",
                "reason": key,
            }
            try:
                resp = client.post("/rollback", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                return None
            return resp.json()["data"]["workflow_run_id"] if resp.status_code == 200 else None

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, requests))
    run_ids = [r for r in answers if r]
    runs = _wait_runs(stack, run_ids, started + DRAIN_TIMEOUT_S)
    watcher.stop()
    ended = max(_ts(r["end_time"]) if r["end_time"] else time.time() for r in runs)
    first_sent = min(_ts(r["created"]) for r in runs)
    states: dict[str, int] = {}
    for r in runs:
        states[r["state_type"]] = states.get(r["state_type"], 0) + 1
    latencies = [t - sent[name] for name, t in watcher.changes if name in sent]
    errors = len(answers) - len(run_ids)
    run_s = statistics.median(
        _ts(r["end_time"]) - _ts(r["start_time"]) for r in runs if r["end_time"]
    )
    finished = sum(r["state_type"] in FINAL for r in runs)  # runs/min counts ended runs only
    return Result(database, workers, ended - first_sent, finished, states, latencies, errors, run_s)


def _wait_runs(stack: Stack, run_ids: list[str], deadline: float) -> list[dict[str, Any]]:
    body = {"flow_runs": {"id": {"any_": run_ids}}, "limit": 200}
    while True:
        runs = httpx.post(f"{stack.api_url}/flow_runs/filter", json=body, timeout=30).json()
        if len(runs) == len(set(run_ids)) and all(r["state_type"] in FINAL for r in runs):
            return runs
        if time.monotonic() > deadline:  # report what drained; the rest shows as not final
            return runs
        time.sleep(0.5)


def _ts(value: str) -> float:
    from rollback.models import parse_iso

    stamp = parse_iso(value)
    assert stamp is not None
    return stamp.timestamp()


def reset_world(stack: Stack) -> None:
    assert stack.moto_url
    request = urllib.request.Request(stack.moto_url + "/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=30).close()
    seed(stack, SERVICES)


def bench_database(database: str) -> list[Result]:
    state = Path(tempfile.mkdtemp(prefix=f"bench-stack-{database}-"))
    opts = Options(
        state_dir=state,
        workers=1,
        worker_limit=WORKER_LIMIT,
        postgres=database == "postgresql",
        sandbox=True,
        sandbox_services=SERVICES,
        deployments=("rollback-auto",),
        api_port=free_port(),
        receiver_port=free_port(),
        moto_port=free_port(),
        pg_port=free_port(),
        quiet=True,
    )
    results = []
    t0 = time.monotonic()
    try:
        stack = up(opts)
        print(f"   {database} stack up in {time.monotonic() - t0:.0f}s", flush=True)
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ[key] = stack.env[key]
        os.environ["AWS_DEFAULT_REGION"] = stack.env["AWS_DEFAULT_REGION"]
        for workers in (1, 2):
            if workers == 2:
                stack.start_worker(2, opts)
                stack.wait_workers(2)
                reset_world(stack)
            results.append(drain(stack, database, workers))
            print("  " + results[-1].row(), flush=True)
    finally:
        down(state)
    shutil.rmtree(state, ignore_errors=True)  # kept (with its logs) when something failed
    return results


def main() -> int:
    print(
        f"== stack throughput: {REQUESTS} requests across {SERVICES} services, "
        f"process workers limited to {WORKER_LIMIT} runs each, {os.cpu_count()} CPUs"
    )
    header = (
        "| database   | w | drain s | runs/min | p50 s | p95 s | upd | final states |\n"
        "|------------|---|---------|----------|-------|-------|-----|--------------|"
    )
    print(header, flush=True)
    results = []
    for database in ("sqlite", "postgresql"):
        results += bench_database(database)
    print(header)
    for r in results:
        print(r.row())
    pg = {r.workers: r for r in results if r.database == "postgresql"}
    # Throughput ratio: the drain-time ratio when both phases drained, still meaningful
    # when a phase hit its deadline.
    ratio = pg[2].per_minute / pg[1].per_minute
    verdict = "meets" if ratio >= 1.6 else "below"
    print(f"PostgreSQL speed-up, 2 workers / 1 worker (runs/min): {ratio:.2f}x ({verdict} 1.6x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
