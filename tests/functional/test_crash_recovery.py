"""Crash safety: a rollback process killed after update_service loses nothing, and the
next request resumes it without rolling back further or switching twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.sandbox import CLUSTER
from flows.rollback_flow import rollback_flow
from rollback import aws
from rollback.config import load_config
from rollback.models import RollbackRequest, Status
from rollback.runtime import Runtime
from tests.conftest import cli_env
from tests.fakes.faulty_proxy import faulty_proxy
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.slow


def test_killed_rollback_is_marked_interrupted_and_resumed(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    # GIVEN staging/api on a service that will not stabilize (desired 2, moto runs 1)
    def stuck(data: dict[str, Any]) -> None:
        data["stores"]["lock_lease_s"] = 1
        data["environments"]["staging"]["services"]["api"].update(
            service="api-stuck", stabilize_timeout_s=120
        )

    config = make_world(tmp_path, edit=stuck)
    ecs = aws_ecs()
    ecs.create_service(
        cluster=CLUSTER, serviceName="api-stuck", taskDefinition="api:4", desiredCount=2
    )
    # WHEN a rollback process is killed right after it switched the service
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("rollback")),
            "run",
            "--config",
            str(config),
            "--env",
            "staging",
            "--service",
            "api",
        ],
        env=cli_env(PREFECT_API_URL=prefect_api_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while service_task_definition("api-stuck") != "api:3":
            assert proc.poll() is None, "the rollback process ended before switching"
            assert time.monotonic() < deadline, "the rollback never switched the service"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    rt = Runtime(load_config(config))
    (dead,) = rt.audit.recent("staging", "api")
    # THEN the audit record already names what ran before and where it was going
    assert dead.status in (Status.EXECUTING, Status.STABILIZING)
    assert (dead.from_version, dead.to_version) == ("api:4", "api:3")

    # The service settles meanwhile; the dead run's lease runs out.
    ecs.update_service(cluster=CLUSTER, service="api-stuck", desiredCount=1)
    time.sleep(1.2)
    # WHEN the next rollback request comes (through a proxy that counts API calls)
    with faulty_proxy(aws, lambda n: False) as (proxy_url, stats):
        os.environ["AWS_ENDPOINT_URL"] = proxy_url
        try:
            result = rollback_flow(
                request=RollbackRequest(environment="staging", service="api", requested_by="t"),
                config_path=str(config),
            )
        finally:
            os.environ["AWS_ENDPOINT_URL"] = aws
    # THEN the dead attempt is marked interrupted, and the new one resumes it: it stays
    # on api:3 (never further back) and does not call UpdateService again
    assert rt.audit.get(dead.audit_id).status == Status.INTERRUPTED
    assert result["status"] == "succeeded", result
    assert (result["from_version"], result["to_version"]) == ("api:4", "api:3")
    assert service_task_definition("api-stuck") == "api:3"
    assert not any("UpdateService" in target for target in stats.forwarded)
    assert any("resuming interrupted rollback" in c["detail"] for c in result["checks"])
    # AND the dead process's flow run no longer shows RUNNING: it ended CRASHED
    assert _flow_run_state(dead.flow_run_id) == "CRASHED"


def _flow_run_state(flow_run_id: str | None) -> str | None:
    from uuid import UUID

    from prefect import get_client

    assert flow_run_id
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    return state.type.value if state else None


def aws_ecs() -> Any:
    return aws.client("ecs")
