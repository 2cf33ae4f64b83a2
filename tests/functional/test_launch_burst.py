"""A burst of accepted requests on the server path: the launchers make their Prefect API
calls one request at a time (20 concurrent flow-run creations against a SQLite-backed
server took 65–80 s each, one at a time 0.05–0.1 s: bench/RESULTS.md, storm)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flows.launch import DeploymentLauncher
from rollback.config import load_config
from rollback.models import RollbackRequest, new_id
from tests.functional.test_webhooks import _deploy_rollback_auto
from tests.functional.world import make_world


class InFlight:
    """Counts the calls of a function that are running at once (the real call is made)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.now = self.most = self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)  # widen the window a concurrent caller would fall into
            return self.real(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.timeout(120)
def test_a_burst_creates_deployment_runs_one_request_at_a_time(
    aws: str, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.deployments
    from prefect import get_client

    # GIVEN the rollback-auto deployment on a Prefect server, and the deployment launcher
    _deploy_rollback_auto(prefect_api_url, "burst-pool")
    launcher = DeploymentLauncher(load_config(make_world(tmp_path)))
    spy = InFlight(prefect.deployments.run_deployment)
    monkeypatch.setattr(prefect.deployments, "run_deployment", spy)
    requests = [
        RollbackRequest(environment="staging", service="api", requested_by=f"burst-{n}")
        for n in range(8)
    ]

    # WHEN eight accepted requests start at once (the receiver's threads)
    def start(request: RollbackRequest) -> str | None:
        audit_id = new_id()
        return launcher.start(request, audit_id, audit_id).flow_run_id

    with ThreadPoolExecutor(8) as pool:
        run_ids = list(pool.map(start, requests))

    # THEN each got its own run, created one request at a time
    assert spy.calls == 8 and len(set(run_ids)) == 8
    assert spy.most == 1, f"{spy.most} flow-run creations were in flight at once"
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            assert run_id is not None and client.read_flow_run(run_id).deployment_id
