"""What our rollback flow costs beyond Prefect itself and beyond the AWS calls it makes.

Against one moto server, in one run, 20 times each:
  (a) the rollback flow end to end (ECS, checks, stabilize, verify, audit, notify);
  (b) an empty Prefect flow with the same number of task runs;
  (c) the raw boto3 calls (a) makes, recorded from (a) and replayed verbatim.
Prints medians and the ratios a/b (goal <= 1.5) and a/c.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from botocore import xform_name  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from devstack import sandbox  # noqa: E402
from flows.rollback_flow import rollback_flow  # noqa: E402
from rollback import aws
from rollback.models import RollbackRequest  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "20"))


@task(cache_policy=NO_CACHE, persist_result=False)
def noop(i: int) -> int:
    return i


@flow(persist_result=False)
def empty_flow(tasks: int) -> None:
    for i in range(tasks):
        noop(i)


def reset_world(url: str, config: Path) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST")).close()
    sandbox.seed_all(config)


def record_calls() -> tuple[list[tuple[str, str, dict[str, Any]]], Any]:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.service_model.service_name, model.name, dict(params)))

    session = aws._session(None)
    session.events.register("provide-client-params.*.*", hook)
    return calls, lambda: session.events.unregister("provide-client-params.*.*", hook)


def count_task_runs(flow_run_id: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return len(runs)


def main() -> None:
    with sandbox.moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(sandbox.SANDBOX_ENV | {"AWS_ENDPOINT_URL": url})
        config = Path(tmp) / "config.yaml"
        request = RollbackRequest(environment="staging", service="api", requested_by="bench")

        # Warm-up (the embedded Prefect server starts here) and call recording.
        reset_world(url, config)
        calls, stop = record_calls()
        first = rollback_flow(request=request, config_path=str(config))
        stop()
        assert first["status"] == "succeeded", first
        tasks = count_task_runs(first["flow_run_id"])
        empty_flow(tasks)

        flow_times, empty_times, raw_times = [], [], []
        for _ in range(RUNS):
            reset_world(url, config)
            t0 = time.perf_counter()
            out = rollback_flow(request=request, config_path=str(config))
            flow_times.append(time.perf_counter() - t0)
            assert out["status"] == "succeeded", out

            t0 = time.perf_counter()
            empty_flow(tasks)
            empty_times.append(time.perf_counter() - t0)

            reset_world(url, config)
            clients = {svc: aws.client(svc) for svc in {c[0] for c in calls}}
            t0 = time.perf_counter()
            for service, op, params in calls:
                try:
                    getattr(clients[service], xform_name(op))(**params)
                except clients[service].exceptions.ClientError:
                    pass  # replayed conditional writes may lose; the call still costs
            raw_times.append(time.perf_counter() - t0)

    a, b, c = (statistics.median(x) for x in (flow_times, empty_times, raw_times))
    print(f"rollback flow (a):            median {a * 1000:8.1f} ms over {RUNS} runs")
    print(f"empty flow, {tasks} tasks (b):    median {b * 1000:8.1f} ms")
    print(f"raw boto3, {len(calls)} calls (c):    median {c * 1000:8.1f} ms")
    print(f"a/b = {a / b:.2f}  (goal <= 1.5: our logic costs little beyond Prefect)")
    print(f"a/c = {a / c:.1f}  (Prefect orchestration + our logic over bare API calls)")


if __name__ == "__main__":
    main()
