"""The platform watch survives a receiver restart: each watch is kept open in the marker
store (with its deadline from the event) and a receiver that starts resumes it. The
receiver over HTTP, the moto sandbox, ECS circuit-breaker settings from
tests/fakes/ecs_circuit_breaker.py (which moto lacks)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack import sandbox
from rollback import aws
from rollback.config import Config
from rollback.platform_rollbacks import AwsPlatformRollbacks
from rollback.runtime import Runtime
from tests.fakes.ecs_circuit_breaker import CircuitBreakerEcs
from tests.functional.receiver_rig import (
    Receiver,
    audit_count,
    edit_config,
    running,
    seed_world,
    write_config,
)
from tests.unit.webhooks.test_aws_events import event

SERVICE_ARN = f"arn:aws:ecs:us-east-1:123456789012:service/{sandbox.CLUSTER}/api-staging"


def timeout(seconds: float) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["services"]["api"]["stabilize_timeout_s"] = seconds

    return change


@pytest.fixture
def config_path(aws: str, prefect_server: None, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml")


def start_receiver(config: Config) -> Receiver:
    """A receiver process (as far as the watch can tell): ECS rolls back by itself."""
    ecs = CircuitBreakerEcs(aws.client("ecs"), {"api-staging": {"enable": True, "rollback": True}})
    return Receiver(config, platform=AwsPlatformRollbacks(ecs=ecs))


def end_receiver(rx: Receiver) -> None:
    """The receiver process ends: its watch threads end with it, nothing is closed."""
    watch = rx.app.state.platform_watch
    watch.close()
    assert watch.wait_idle(10)
    rx.stop()


def watching(rx: Receiver) -> str:
    ecs_failed = event("ecs-deployment-failed.json") | {"resources": [SERVICE_ARN]}
    resp = rx.post("/webhooks/aws", json=ecs_failed, headers=rx.alarm_bearer())
    assert resp.status_code == 202 and resp.json()["status"] == "watching", resp.text
    return str(resp.json()["watch_id"])


def test_a_watch_survives_a_receiver_restart(config_path: Path) -> None:
    # GIVEN a receiver watching ECS's own rollback of staging/api (api:4 failed)
    edit_config(config_path, timeout(120))
    config = seed_world(config_path)
    first = start_receiver(config)
    watch_id = watching(first)
    # WHEN the receiver stops mid-watch, and ECS completes its rollback meanwhile
    end_receiver(first)
    assert first.app.state.platform_watch.results[watch_id] == "stopped"
    assert watch_id in Runtime(config).markers.open_watches()
    aws.client("ecs").update_service(
        cluster=sandbox.CLUSTER, service="api-staging", taskDefinition="api:3"
    )
    # THEN a new receiver resumes the watch on start and records ECS's rollback once
    second = start_receiver(config)
    try:
        watch = second.app.state.platform_watch
        deadline = time.monotonic() + 30
        while watch_id not in watch.results and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watch.results.get(watch_id) == "rolled_back", watch.results
        rt = Runtime(config)
        rollbacks = [r for r in rt.history.query("staging", "api") if r.kind == "rollback"]
        assert [(r.version, r.from_version, r.trigger) for r in rollbacks] == [
            ("api:3", "api:4", "ecs-circuit-breaker")
        ]
        assert "api:4" in rt.markers.bad_versions("staging", "api")
        assert rt.markers.open_watches() == {} and audit_count(config) == 0
    finally:
        end_receiver(second)


def test_a_resumed_watch_keeps_the_deadline_of_the_event(config_path: Path) -> None:
    # GIVEN a watch with a 6 s deadline, its receiver stopped at once
    edit_config(config_path, timeout(6))
    config = seed_world(config_path)
    first = start_receiver(config)
    watch_id = watching(first)
    end_receiver(first)
    # WHEN the deadline passes with ECS still on api:4, and a receiver starts again
    time.sleep(6.5)
    started = time.monotonic()
    second = start_receiver(config)
    try:
        watch = second.app.state.platform_watch
        while watch_id not in watch.results and time.monotonic() - started < 30:
            time.sleep(0.05)
        # THEN the watch does not start a fresh 6 s: our own rollback is requested at once
        result = watch.results.get(watch_id, "")
        assert result.startswith("fallback:accepted:"), watch.results
        assert time.monotonic() - started < 5
        second.wait()
        assert running() == "api:3"
        assert Runtime(config).markers.open_watches() == {}
    finally:
        end_receiver(second)


def test_a_watch_that_never_started_before_the_stop_is_stopped_and_kept(
    config_path: Path,
) -> None:
    # GIVEN a receiver whose watch threads are all busy, so a new watch waits its turn
    edit_config(config_path, timeout(120))
    config = seed_world(config_path)
    rx = start_receiver(config)
    watch = rx.app.state.platform_watch
    busy = threading.Event()
    watch._pool = ThreadPoolExecutor(max_workers=1)
    watch._pool.submit(busy.wait, 30)
    watch_id = watching(rx)
    # WHEN the receiver stops before the watch ever ran
    try:
        end_receiver(rx)
    finally:
        busy.set()
    # THEN it is reported stopped, not lost, and stays open for the next receiver
    assert watch.results[watch_id] == "stopped"
    assert watch_id in Runtime(config).markers.open_watches()
