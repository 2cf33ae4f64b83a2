"""Deploy verification end to end against moto CloudWatch (``put_metric_data`` with
timestamps): the verify-deploy flow on the session Prefect server, its rollback through
the intake (embedded launcher, real rollback flow), and the retrospective CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from deployments.cli.main import app
from flows.verify_deploy import verify_deploy_flow
from rollback import aws
from rollback.config import Config
from rollback.models import iso, utcnow
from rollback.runtime import Runtime
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
