"""Deploy verification end to end against moto CloudWatch (``put_metric_data`` with
timestamps): the verify-deploy flow on the session Prefect server, its rollback through
the intake (embedded launcher, real rollback flow), and the retrospective CLI."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Artifact as ArtifactResponse
from prefect.exceptions import CancelledRun
from prefect.states import Cancelling
from typer.testing import CliRunner

from deployments.cli.main import app
from flows.verify_deploy import verify_deploy_flow
from rollback import aws
from rollback.config import Config, load_config
from rollback.models import iso, utcnow
from rollback.runtime import Runtime
from rollback.stores.markers import Bake, mark_ts
from tests.conftest import cli_env
from tests.functional.receiver_rig import (
    audit_count,
    edit_config,
    running,
    seed_world,
    write_config,
)

API = "public-api"
LB = "app/public/abc123"
VERIFICATION = {
    "bake_minutes": 10,
    "baseline_minutes": 60,
    "metrics": [
        {
            "name": "5xx-rate",
            "namespace": "AWS/ApiGateway",
            "metric": "5XXError",
            "per": "Count",
            "dimensions": {"ApiName": API},
            "stat": "Sum",
            "max_pct": 10,
            "min_effect": 0.5,
        },
        {
            # moto serves Average over timestamps; p99 is what production would use.
            "name": "latency",
            "namespace": "AWS/ApplicationELB",
            "metric": "TargetResponseTime",
            "dimensions": {"LoadBalancer": LB},
            "stat": "Average",
            "min_effect": 0.2,
        },
    ],
}


@pytest.fixture
def world(aws: str, prefect_server: None, tmp_path: Path) -> tuple[Config, Path]:
    path = write_config(tmp_path / "config.yaml")

    def add(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["verification"] = VERIFICATION

    edit_config(path, add)
    return seed_world(path), path


def publish(deployed_minutes_ago: int, errors_after: float, requests_after: float) -> str:
    """Put 60 baseline and 10 bake minutes of metrics; returns the deploy time (ISO)."""
    rng = np.random.default_rng(5)
    now = utcnow().replace(second=0, microsecond=0)
    deployed = now - timedelta(minutes=deployed_minutes_ago)
    data = []
    for m in range(-60, 10):
        at = deployed + timedelta(minutes=m, seconds=20)
        bake = m >= 0
        requests = requests_after if bake else 1000.0
        errors = errors_after if bake else float(rng.integers(3, 8))
        latency = 0.12 + float(rng.random()) * 0.02 + (0.2 if bake and errors_after > 50 else 0)
        dims_api = [{"Name": "ApiName", "Value": API}]
        data += [
            {"MetricName": "Count", "Dimensions": dims_api, "Timestamp": at, "Value": requests},
            {"MetricName": "5XXError", "Dimensions": dims_api, "Timestamp": at, "Value": errors},
        ]
        lb = [{"Name": "LoadBalancer", "Value": LB}]
        latency_datum = {"MetricName": "TargetResponseTime", "Dimensions": lb, "Timestamp": at}
        data.append(latency_datum | {"Value": latency})
    cw = aws.client("cloudwatch")
    gateway = [d for d in data if d["MetricName"] != "TargetResponseTime"]
    elb = [d for d in data if d["MetricName"] == "TargetResponseTime"]
    cw.put_metric_data(Namespace="AWS/ApiGateway", MetricData=gateway)
    cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=elb)
    return str(iso(deployed))


def test_a_regression_rolls_back_with_evidence(world: tuple[Config, Path]) -> None:
    # GIVEN staging/api's deploy 12 minutes ago took the 5XX rate from ~0.5 % to 6 %
    config, path = world
    deployed_at = publish(12, errors_after=60, requests_after=1000)
    # WHEN the verification flow judges the bake window
    result = verify_deploy_flow("staging", "api", deployed_at, "api:4", str(path), "embedded")
    # THEN fail (relative rule: below the 10 % ceiling), and a rollback ran with evidence
    assert result["verdict"] == "fail", result
    assert result["rule"].startswith("5xx-rate: relative")
    five = next(m for m in result["metrics"] if m["name"] == "5xx-rate")
    assert five["p_value"] < 0.05 and five["effect"] > 5 and five["u"] is not None
    assert result["rollback"]["status"] == "accepted"
    assert running() == "api:3"
    record = Runtime(config).audit.get(result["rollback"]["audit_id"])
    assert record is not None and record.trigger == "verification"
    assert "5xx-rate" in record.reason and "→" in record.reason
    # WHEN the same bake is judged again  THEN the same incident: nothing new starts
    again = verify_deploy_flow("staging", "api", deployed_at, "api:4", str(path), "embedded")
    assert again["rollback"]["status"] == "duplicate"


def test_healthy_deploy_passes_and_low_traffic_is_inconclusive(
    world: tuple[Config, Path],
) -> None:
    config, path = world
    # GIVEN a healthy deploy  WHEN judged  THEN pass, nothing rolled back
    deployed_at = publish(12, errors_after=5, requests_after=1000)
    result = verify_deploy_flow("staging", "api", deployed_at, "api:4", str(path), "embedded")
    assert result["verdict"] == "pass" and "rollback" not in result
    assert running() == "api:4" and audit_count(config) == 0
    # GIVEN an older deploy whose bake window saw no API traffic (two hours back)
    low = publish(130, errors_after=1, requests_after=0)
    out = CliRunner().invoke(
        app,
        ["verify", "--config", str(path), "--env", "staging", "--service", "api",
         "--deployed-at", low, "--json"],
    )  # fmt: skip
    # THEN the retrospective CLI says inconclusive (exit 4), never fail
    assert out.exit_code == 4, out.output
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["verdict"] == "inconclusive"
    assert {m["name"] for m in last["metrics"]} == {"5xx-rate", "latency"}


def test_cli_retrospective_fail_and_usage_errors(world: tuple[Config, Path]) -> None:
    _, path = world
    deployed_at = publish(12, errors_after=60, requests_after=1000)
    base = [sys.executable, "-m", "deployments.cli.main", "verify", "--config", str(path)]
    out = subprocess.run(
        [*base, "--env", "staging", "--service", "api", "--deployed-at", deployed_at, "--json"],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["verdict"] == "fail"
    assert running() == "api:4"  # retrospective: nothing rolled back
    bad = subprocess.run(
        [*base, "--env", "prod", "--service", "api", "--deployed-at", "yesterday"],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error:")
    # a missing option is still a usage error (exit 2), as before `verify promote` existed
    missing = subprocess.run(
        [*base, "--env", "staging", "--service", "api"],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "Missing option '--deployed-at'" in missing.stderr


def promote_cli(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``rollback verify promote`` as a separate process (the bake runs in this one)."""
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli.main", "verify", "promote", "--config",
         str(path), "--env", "staging", "--service", "api", *extra],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip


class LiveBake:
    """A live bake of staging/api running in a thread of this process, as in the receiver."""

    def __init__(self, config: Config, path: Path, deployed_at: str) -> None:
        self.config = config
        self.result: dict[str, Any] = {}
        self.error: Exception | None = None
        self.args = ("staging", "api", deployed_at, "api:4", str(path), "embedded")
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result.update(verify_deploy_flow(*self.args))
        except CancelledRun as exc:  # how a direct call reports a cancelled run
            self.error = exc

    def registered(self, timeout: float = 60) -> Bake:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bake = Runtime(self.config).markers.bake("staging", "api")
            if bake is not None and bake.running(utcnow()):
                return bake
            time.sleep(0.2)
        raise AssertionError("the bake never started")

    def ended_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return not self.thread.is_alive()


def test_promote_ends_a_running_bake_and_starts_no_rollback(world: tuple[Config, Path]) -> None:
    config, path = world
    # GIVEN no bake running  WHEN promoted  THEN one-line error, exit 2, nothing written
    idle = promote_cli(path)
    assert idle.returncode == 2, idle.stdout + idle.stderr
    assert idle.stderr.startswith("error: no bake of staging/api is running")
    assert len(idle.stderr.strip().splitlines()) == 1
    assert Runtime(config).markers.bake("staging", "api") is None
    # GIVEN a live bake a minute into a regression (too few minutes yet to fail)
    bake = LiveBake(config, path, publish(1, errors_after=60, requests_after=1000))
    running_bake = bake.registered()
    assert running_bake.run_id and running_bake.promoted_by is None
    # WHEN a person promotes it from another process
    out = promote_cli(path, "--reason", "canary looked fine")
    # THEN the bake ends at once (not in 9 minutes) as promoted by that person (the
    # margin is for a loaded machine: the run still draws its chart); nothing rolled back
    assert out.returncode == 0, out.stderr
    assert "promoted staging/api" in out.stdout and running_bake.run_id in out.stdout
    noticed = time.monotonic()
    while bake.thread.is_alive() and time.monotonic() - noticed < 30:
        seen = Runtime(config).markers.bake("staging", "api")
        if seen is not None and seen.verdict == "promoted":  # written by the bake loop
            break
        time.sleep(0.1)
    assert time.monotonic() - noticed < 10, "the bake took too long to notice the promote"
    assert bake.ended_within(45), "the bake did not end after promote"
    who = f"cli:{getpass.getuser()}"
    assert bake.result["verdict"] == "promoted", bake.result
    assert bake.result["ended_by"]["by"] == who
    assert bake.result["ended_by"]["reason"] == "canary looked fine"
    assert bake.result["analysis"] == "inconclusive" and "rollback" not in bake.result
    stored = Runtime(config).markers.bake("staging", "api")
    assert stored is not None and stored.verdict == "promoted" and stored.promoted_by == who
    assert stored.promoted_at and stored.promote_reason == "canary looked fine"
    assert running() == "api:4" and audit_count(config) == 0
    artifact = Artifact.get("verification-staging-api")
    assert isinstance(artifact, ArtifactResponse) and f"Promoted by {who}" in str(artifact.data)
    # WHEN promoted again  THEN the bake is over: exit 2, the record unchanged
    again = promote_cli(path, "--reason", "twice")
    assert again.returncode == 2 and again.stderr.startswith("error: no bake")
    assert Runtime(config).markers.bake("staging", "api") == stored


def test_cancelling_a_bake_starts_nothing(world: tuple[Config, Path]) -> None:
    config, path = world
    # GIVEN a live bake a minute into a regression
    bake = LiveBake(config, path, publish(1, errors_after=60, requests_after=1000))
    run_id = bake.registered().run_id
    assert run_id
    # WHEN its flow run is cancelled (what the UI's Cancel does)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Cancelling(), force=True)
    # THEN the bake ends within seconds, aborted, and no rollback starts
    assert bake.ended_within(45), "the bake did not end after cancel"
    assert isinstance(bake.error, CancelledRun) and not bake.result
    stored = Runtime(config).markers.bake("staging", "api")
    assert stored is not None and stored.verdict == "aborted"
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(UUID(run_id)).state
    assert final is not None and final.is_cancelled(), final
    assert running() == "api:4" and audit_count(config) == 0


def test_the_first_of_promote_and_verdict_wins(aws: str, tmp_path: Path) -> None:
    # GIVEN the marker store of the moto server and a live bake of staging/api
    rt = Runtime(load_config(write_config(tmp_path / "config.yaml")))
    rt.ensure_tables()
    soon = mark_ts(utcnow() + timedelta(minutes=5))
    live = Bake("run-1", "staging", "api", "2026-01-01T00:00:00+00:00", "api:4", "run-1", soon)
    rt.markers.start_bake(live)
    # WHEN a person promotes it, and then the bake reaches a fail verdict
    assert rt.markers.promote_bake("staging", "api", "cli:alice", "looks fine") is not None
    closed = rt.markers.close_bake("staging", "api", "run-1", "fail")
    # THEN the promote wins: the bake ends promoted (no rollback), a second promote fails
    assert closed.verdict == "promoted" and closed.promoted_by == "cli:alice"
    assert rt.markers.promote_bake("staging", "api", "cli:bob", "again") is None
    # GIVEN the next bake  WHEN it fails first  THEN a promote after it writes nothing
    rt.markers.start_bake(replace(live, bake_id="run-2", run_id="run-2"))
    assert rt.markers.close_bake("staging", "api", "run-2", "fail").verdict == "fail"
    assert rt.markers.promote_bake("staging", "api", "cli:alice", "late") is None
    stored = rt.markers.bake("staging", "api")
    assert stored is not None and stored.verdict == "fail" and stored.promoted_by is None
    # GIVEN a bake whose window is over (its process died)  THEN nothing to promote
    rt.markers.start_bake(replace(live, bake_id="run-3", live_until=mark_ts(utcnow())))
    assert rt.markers.promote_bake("staging", "api", "cli:alice", "stale") is None
