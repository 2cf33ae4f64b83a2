"""Scale-out: a Prefect server on PostgreSQL, two process workers, the receiver in
deployment mode and a sandbox of five ECS services; ten rollback requests at once.

Checks: every request ends succeeded or refused, never two rollbacks of one service at a
time (audit transitions), different services in parallel, a redelivered request is the
same run, every attempt is in the audit log, one strict concurrency limit per service.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from devstack.sandbox import free_port
from devstack.stack import Options, Stack, down, up
from tests.functional.stack_runs import change_window, max_parallel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = [f"svc-{i:02d}" for i in range(1, 6)]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        workers=2,
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
        yield up(opts)
    finally:
        down(state)


def test_ten_requests_for_five_services_on_two_workers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the stack on PostgreSQL with two workers, and two requests per service
    assert stack.database == "postgresql"
    requests = [(service, f"scale-{service}-{n}") for n in (1, 2) for service in SERVICES]
    headers = {"Authorization": f"Bearer {stack.token()}"}

    # WHEN all ten arrive at once, then the first one is delivered again
    with httpx.Client(base_url=stack.receiver_url, headers=headers, timeout=60) as receiver:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r: _post(receiver, *r), requests))
        again = _post(receiver, *requests[0])

    # THEN each was accepted (or turned away at the door because its service was busy)
    accepted = [a for a in answers if a.status_code == 200]
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    assert len(accepted) >= len(SERVICES)
    # AND the redelivery is the same run, not a new one
    first = answers[0].json()["data"]
    assert again.status_code == 200
    assert again.json()["data"]["workflow_run_id"] == first["workflow_run_id"]
    assert again.json()["data"]["audit_id"] == first["audit_id"]

    runs = _wait_runs(stack, [a.json()["data"]["workflow_run_id"] for a in accepted])
    # AND no duplicate run: one flow run per accepted request, each completed or refused
    # (a refused rollback ends Failed "Refused", never a crash or a plain failure)
    assert len(_deployment_runs(stack)) == len(accepted)
    ends = {(r["state_type"], r["state"]["name"]) for r in runs}
    assert ends <= {("COMPLETED", "Completed"), ("FAILED", "Refused")}, ends

    # AND the audit log has every attempt, each succeeded or refused
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, stack.env[key])
    records = _audit(stack)
    ids = {a.json()["data"]["audit_id"] for a in accepted}
    assert ids <= set(records), "every accepted request has an audit record"
    statuses = {records[i].status.value for i in ids}
    assert statuses <= {"succeeded", "refused"}, statuses
    # AND every service was rolled back, never by two runs at a time
    by_service: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for audit_id in ids:
        record = records[audit_id]
        window = change_window(record.transitions)
        if window:
            by_service[record.service].append(window)
    assert set(by_service) == set(SERVICES)
    for service, windows in by_service.items():
        windows.sort()
        for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
            assert start >= end, f"two rollbacks of {service} overlapped"
    # AND different services did run at the same time
    assert max_parallel(runs) >= 2
    # AND the stack made one strict one-slot limit per service for the flow to take
    limits = _api(stack, "POST", "/v2/concurrency_limits/filter", {})
    names = {lim["name"]: lim["limit"] for lim in limits}
    assert all(names.get(f"rollback-staging-{s}") == 1 for s in SERVICES), names


def _post(client: httpx.Client, service: str, key: str) -> httpx.Response:
    body = {
        "environment": "staging",
        "service": service,
        "rollback_type": "ecs",
        "user_id": "scale-test",
        "reason": f"scale-out test {key}",
    }
    return client.post("/rollback", json=body, headers={"Idempotency-Key": key})


def _wait_runs(stack: Stack, run_ids: list[str], timeout: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _api(stack, "POST", "/flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
        if len(runs) == len(set(run_ids)) and all(r["state_type"] in FINAL for r in runs):
            return runs
        assert time.monotonic() < deadline, [r["state_type"] for r in runs]
        time.sleep(0.5)


def _deployment_runs(stack: Stack) -> list[dict[str, Any]]:
    deployment = _api(stack, "GET", "/deployments/name/rollback/rollback-auto")
    return _api(
        stack, "POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}}
    )


def _audit(stack: Stack) -> dict[str, Any]:
    from rollback.config import load_config
    from rollback.runtime import Runtime

    rt = Runtime(load_config(stack.config))
    return {r.audit_id: r for s in SERVICES for r in rt.audit.recent("staging", s, limit=20)}


def _api(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, stack.api_url + path, json=body, timeout=30)
    resp.raise_for_status()
    return resp.json()
