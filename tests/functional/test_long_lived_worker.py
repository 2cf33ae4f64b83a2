"""Automatic rollbacks on long-lived workers (``rollback worker``, queued flow runs):
the properties of issue #12, against one real stack — a Prefect server on PostgreSQL, the
receiver in worker mode, moto with six staging ECS services — with the workers started
and killed by the tests themselves.

In file order (they share the stack): requests accepted while no worker runs, one of
them across a Prefect server restart, all run when a worker starts; a worker killed
mid-rollback is recovered by the lease + interrupted path without a second switch; two
workers never run two rollbacks of one service at once, and a redelivery is the same
run; a flow run queued by hand (no intake claim) is never automatic, and one with junk
parameters ends Failed with a one-line reason while the worker goes on; the health guard
ticks inside a worker; a listening worker outlives a server restart.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sandbox import CLUSTER, free_port
from devstack.stack import Options, Proc, Stack, down, up, wait_rollback_workers
from rollback.models import Status
from tests.fakes.faulty_proxy import FaultStats, faulty_proxy
from tests.functional.stack_runs import change_window, max_parallel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICES = [f"svc-{i:02d}" for i in range(1, 7)]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LEASE_S = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        workers=0,  # no process worker: everything here runs on long-lived workers
        rollback_workers=0,  # the tests start them
        receiver_mode="worker",
        postgres=True,
        sandbox=True,
        sandbox_services=len(SERVICES),
        deployments=("rollback-auto",),
        api_port=free_port(),
        receiver_port=free_port(),
        moto_port=free_port(),
        pg_port=free_port(),
        quiet=True,
    )
    try:
        started = up(opts)
        # A short lease, so that a killed worker's lock runs out within the test.
        config = json.loads(Path(started.config).read_text())
        config["stores"]["lock_lease_s"] = LEASE_S
        Path(started.config).write_text(json.dumps(config))
        yield started
    finally:
        down(state)


@pytest.fixture(autouse=True)
def stack_aws(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process reads the stack's moto (audit records, ECS services)."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, stack.env[key])


def test_requests_wait_for_a_worker_and_survive_a_server_restart(stack: Stack) -> None:
    # GIVEN the receiver in worker mode and no worker running
    with _receiver(stack) as receiver:
        # WHEN two requests are accepted, the Prefect server restarts, a third arrives
        before = [_post(receiver, s, f"queued-{s}") for s in ("svc-01", "svc-02")]
        stack.restart_server()
        after = _post(receiver, "svc-04", "queued-svc-04")
    answers = [*before, after]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    run_ids = [a.json()["data"]["workflow_run_id"] for a in answers]
    time.sleep(1)
    assert {r["state_type"] for r in _runs(stack, run_ids)} == {"PENDING"}
    # ... and only then a worker starts
    _start_worker(stack, "w1")
    # THEN every request runs: none was lost while nobody listened
    runs = _wait_runs(stack, run_ids, 120)
    assert {r["state_type"] for r in runs} == {"COMPLETED"}, [r["state"] for r in runs]
    records = _audit(stack)
    for answer in answers:
        record = records[answer.json()["data"]["audit_id"]]
        assert record.status == Status.SUCCEEDED, record
        assert (record.from_version, record.to_version) == ("api:4", "api:3")
    log = Path(stack.state_dir, "logs", "rollback-worker-w1.log").read_text()
    assert "picked up 3 waiting rollback(s)" in log


def test_a_worker_killed_mid_rollback_is_resumed_without_a_second_switch(stack: Stack) -> None:
    # GIVEN a worker whose ECS stops answering once it has switched svc-03 (it waits in
    # stabilize; moto itself would report the service stable at once)
    for running in [p for p in stack.procs if p.name == "rollback-worker-w1"]:
        stack.stop(running)
    with (
        faulty_proxy(stack.env["AWS_ENDPOINT_URL"], lambda n: False, stall=_after_switch) as (
            stalling,
            _,
        ),
        _receiver(stack) as receiver,
    ):
        worker = _start_worker(stack, "w1", {"AWS_ENDPOINT_URL": stalling})
        first = _post(receiver, "svc-03", "crash-1").json()["data"]
        # WHEN the worker running it is killed right after it switched the service
        deadline = time.monotonic() + 60
        while _task_definition("svc-03") != "api:3":
            assert time.monotonic() < deadline, "the rollback never switched the service"
            time.sleep(0.05)
        os.killpg(worker.pid, signal.SIGKILL)
        stack.stop(worker)
        dead = _audit(stack)[first["audit_id"]]
        assert dead.status in (Status.EXECUTING, Status.STABILIZING)
        # The dead worker's lease runs out.
        time.sleep(LEASE_S + 0.5)
        # AND a new worker (its AWS calls counted by a proxy) takes the next request
        with faulty_proxy(stack.env["AWS_ENDPOINT_URL"], lambda n: False) as (proxy, stats):
            counted = _start_worker(stack, "w2", {"AWS_ENDPOINT_URL": proxy})
            second = _post(receiver, "svc-03", "crash-2").json()["data"]
            (run,) = _wait_runs(stack, [second["workflow_run_id"]], 90)
            stack.stop(counted)  # its proxy goes away with this block
    # THEN the dead attempt is interrupted, the new one resumes it: no second switch
    records = _audit(stack)
    assert records[first["audit_id"]].status == Status.INTERRUPTED
    resumed = records[second["audit_id"]]
    assert run["state_type"] == "COMPLETED"
    assert resumed.status == Status.SUCCEEDED, resumed
    assert (resumed.from_version, resumed.to_version) == ("api:4", "api:3")
    assert _task_definition("svc-03") == "api:3"
    assert not any("UpdateService" in target for target in stats.forwarded)
    # AND the dead worker's flow run no longer shows RUNNING
    (dead_run,) = _runs(stack, [first["workflow_run_id"]])
    assert dead_run["state_type"] == "CRASHED"


def test_two_workers_never_run_one_service_twice_at_once(stack: Stack) -> None:
    # GIVEN two long-lived workers on the PostgreSQL-backed server
    assert stack.database == "postgresql"
    _start_worker(stack, "w3")
    _start_worker(stack, "w4")
    services = ["svc-01", "svc-02", "svc-04", "svc-05", "svc-06"]
    requests = [(s, f"pair-{s}-{n}") for n in (1, 2) for s in services]
    # WHEN two requests per service arrive at once, then the first is delivered again
    with _receiver(stack) as receiver:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r: _post(receiver, *r), requests))
        again = _post(receiver, *requests[0])
    # THEN each was accepted, or turned away at the door because its service was busy
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    accepted = [a.json()["data"] for a in answers if a.status_code == 200]
    assert len(accepted) >= len(services)
    # AND the redelivery is the same request and run (dedup unchanged)
    first = answers[0].json()["data"]
    assert again.status_code == 200
    assert again.json()["data"]["audit_id"] == first["audit_id"]
    assert again.json()["data"]["workflow_run_id"] == first["workflow_run_id"]
    runs = _wait_runs(stack, [a["workflow_run_id"] for a in accepted], 120)
    # (a refused rollback ends Failed "Refused", as on the deployment path)
    ended = [r for r in runs if r["state_type"] != "COMPLETED" and r["state"]["name"] != "Refused"]
    assert not ended, [r["state"]["message"] for r in ended]
    # AND every attempt is recorded, and no two rollbacks of a service overlapped
    records = _audit(stack)
    ids = {a["audit_id"] for a in accepted}
    assert {records[i].status.value for i in ids} <= {"succeeded", "refused"}
    windows: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for audit_id in ids:
        window = change_window(records[audit_id].transitions)
        if window:
            windows[records[audit_id].service].append(window)
    assert set(windows) == set(services)
    for service, spans in windows.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"two rollbacks of {service} overlapped"
    # AND both workers ran some
    assert max_parallel(runs) >= 2


def test_a_flow_run_queued_by_hand_is_never_automatic(stack: Stack) -> None:
    # GIVEN an automatic-looking request queued straight on the Prefect API: no intake
    # claimed it (anyone who can reach the server could do this)
    request = {
        "environment": "staging",
        "service": "svc-06",
        "requested_by": "mallory",
        "trigger": "webhook",
        "authenticated_by": "github-hmac",
        "source_event_id": "forged-1",
        "dry_run": True,
    }
    forged = _queue_by_hand(stack, {"request": request, "audit_id": "forged-audit"})
    # WHEN a worker runs it, THEN it ran as a manual request, named as such
    deadline = time.monotonic() + 60
    while (record := _audit(stack, ["svc-06"]).get("forged-audit")) is None or record.status in (
        Status.REQUESTED,
        Status.EXECUTING,
    ):
        assert time.monotonic() < deadline, "the forged flow run never ran"
        time.sleep(0.3)
    assert record.trigger == "manual"
    assert record.authenticated_by == "prefect-worker:rollback-auto"
    assert record.status == Status.PLANNED
    (run,) = _wait_runs(stack, [forged], 60)
    assert run["state"]["name"] == "Completed"
    # AND junk parameters end the run Failed with one line, and the worker goes on
    junk = _queue_by_hand(stack, {"request": {"environment": "staging\nFAKE LOG LINE"}})
    (failed,) = _wait_runs(stack, [junk], 60)
    assert failed["state_type"] == "FAILED"
    message = failed["state"]["message"]
    assert message.startswith("not a rollback request: ") and "\n" not in message
    again = _queue_by_hand(stack, {"request": request | {"source_event_id": "forged-2"}})
    (ok,) = _wait_runs(stack, [again], 60)
    assert ok["state_type"] == "COMPLETED"


def _queue_by_hand(stack: Stack, parameters: dict[str, Any]) -> str:
    """A Pending flow run of the rollback flow with the queue's tag, made over REST."""
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    flow = api.post("/flows/", json={"name": "rollback"}).raise_for_status().json()
    body = {
        "flow_id": flow["id"],
        "name": "made-by-hand",
        "parameters": parameters,
        "state": {"type": "PENDING", "name": "Pending"},
        "tags": ["rollback-auto-queue"],
    }
    return str(api.post("/flow_runs/", json=body).raise_for_status().json()["id"])


# -- helpers --------------------------------------------------------------------------------
def _receiver(stack: Stack) -> httpx.Client:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    return httpx.Client(base_url=stack.receiver_url, headers=headers, timeout=60)


def _post(client: httpx.Client, service: str, key: str, dry_run: bool = False) -> httpx.Response:
    body = {
        "environment": "staging",
        "service": service,
        "rollback_type": "ecs",
        "user_id": "worker-test",
        "reason": f"long-lived worker test {key}",
        "dry_run": dry_run,
    }
    return client.post("/rollback", json=body, headers={"Idempotency-Key": key})


def _after_switch(target: str, stats: FaultStats) -> bool:
    """Hold every ECS DescribeServices once the service was switched (UpdateService)."""
    switched = any(t.endswith(".UpdateService") for t in stats.forwarded)
    return switched and target.endswith(".DescribeServices")


def _start_worker(stack: Stack, name: str, env: dict[str, str] | None = None) -> Proc:
    proc = stack.start_rollback_worker(name, ["--requeue-after", "2"], env)
    alive = [p for p in stack.procs if p.name.startswith("rollback-worker-")]
    wait_rollback_workers(stack, len(alive))
    return proc


def _runs(stack: Stack, run_ids: list[str]) -> list[dict[str, Any]]:
    body = {"flow_runs": {"id": {"any_": run_ids}}}
    resp = httpx.post(stack.api_url + "/flow_runs/filter", json=body, timeout=30)
    resp.raise_for_status()
    return list(resp.json())


def _wait_runs(stack: Stack, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(stack, run_ids)
        if len(runs) == len(set(run_ids)) and all(r["state_type"] in FINAL for r in runs):
            return runs
        assert time.monotonic() < deadline, [r["state_type"] for r in runs]
        time.sleep(0.3)


def _audit(stack: Stack, services: list[str] = SERVICES) -> dict[str, Any]:
    from rollback.config import load_config
    from rollback.runtime import Runtime

    rt = Runtime(load_config(stack.config))
    return {r.audit_id: r for s in services for r in rt.audit.recent("staging", s, limit=20)}


def _task_definition(service: str) -> str:
    from rollback import aws

    svc = aws.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"][0]
    return str(svc["taskDefinition"].rsplit("/", 1)[-1])


def test_the_health_guard_ticks_inside_a_worker_and_can_be_paused(stack: Stack) -> None:
    # GIVEN a guarded service whose health URL never answers, and the guard paused
    config = json.loads(Path(stack.config).read_text())
    config["health_guard"] = {
        "failures_to_trigger": 1,
        "services": [{"environment": "staging", "service": "svc-05", "url": _dead_url()}],
    }
    Path(stack.config).write_text(json.dumps(config))
    _variable(stack, "true")
    # WHEN a worker ticking every second starts
    guard = stack.start_rollback_worker("guard", ["--health-interval", "1"])
    time.sleep(4)
    # THEN a paused guard requests nothing
    assert not _health_records(stack)
    # WHEN it is resumed, THEN its tick requests a rollback through the intake, and the
    # served run keeps the trigger the intake granted (health, by the health guard)
    _variable(stack, "false")
    deadline = time.monotonic() + 60
    while not (done := [r for r in _health_records(stack) if r.status.final]):
        assert time.monotonic() < deadline, "the health guard never requested a rollback"
        time.sleep(0.5)
    assert done[0].authenticated_by == "health-guard"
    assert done[0].flow_run_id
    stack.stop(guard)


def test_a_listening_worker_outlives_a_server_restart(stack: Stack) -> None:
    # GIVEN a worker listening to the event stream, whose periodic sweep is 5 minutes away
    for running in [p for p in stack.procs if p.name.startswith("rollback-worker-")]:
        stack.stop(running)
    proc = stack.start_rollback_worker("listener", ["--requeue-after", "600"])
    wait_rollback_workers(stack, 1)
    # WHEN the Prefect server restarts under it, and a request arrives afterwards
    stack.restart_server()
    with _receiver(stack) as receiver:
        answer = _post(receiver, "svc-03", "after-restart", dry_run=True)
    assert answer.status_code == 200, answer.text
    # THEN the worker runs it within seconds: it listens again (and sweeps when it does)
    (run,) = _wait_runs(stack, [answer.json()["data"]["workflow_run_id"]], 45)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert _audit(stack, ["svc-03"])[answer.json()["data"]["audit_id"]].status == Status.PLANNED
    stack.stop(proc)


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/health"


def _variable(stack: Stack, value: str) -> None:
    name = "health_guard_paused"
    resp = httpx.patch(f"{stack.api_url}/variables/name/{name}", json={"value": value}, timeout=10)
    if resp.status_code == 404:
        resp = httpx.post(
            f"{stack.api_url}/variables/", json={"name": name, "value": value}, timeout=10
        )
    resp.raise_for_status()


def _health_records(stack: Stack) -> list[Any]:
    return [r for r in _audit(stack, ["svc-05"]).values() if r.trigger == "health"]
