"""No incident lost, no raw 500 from the stores: requests for a service whose rollback
is in flight are recorded (absorbed, linked), store faults are retried then answered 503
with Retry-After, /readyz tells, and an Idempotency-Key names one request only."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import sandbox
from rollback.config import Config
from rollback.models import AuditRecord, Status, utcnow
from rollback.runtime import Runtime
from tests.fakes.faulty_proxy import faulty_proxy
from tests.functional.receiver_rig import (
    Receiver,
    edit_config,
    running,
    write_config,
)
from tests.servers import free_port
from tests.unit.webhooks.helpers import failed_run, github_headers

THROTTLED = (400, b'{"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}')


def test_incidents_during_a_rollback_are_all_recorded(receiver: Receiver) -> None:
    # GIVEN a rollback of staging/api in flight in another process
    rt = Runtime(receiver.config)
    rt.audit.create(
        AuditRecord("in-flight-1", "staging", "api", Status.EXECUTING, utcnow(), trigger="alarm")
    )
    rt.locks.acquire("staging", "api", "in-flight-1", 300)
    # WHEN 1,000 signed deliveries about 50 different failed runs arrive, 20 each
    bodies = [json.dumps(failed_run(id=5000 + n)).encode() for n in range(50)]
    http = httpx.Client(base_url=receiver.url, timeout=60)

    def deliver(n: int) -> dict[str, Any]:
        body = bodies[n % 50]
        headers = github_headers(receiver.github_secret, body, f"delivery-{n}")
        resp = http.post("/webhooks/github", content=body, headers=headers)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(deliver, range(1000)))
    http.close()
    # THEN every incident is recorded once, absorbed and linked to the rollback in flight
    records = [
        r for r in rt.audit.recent("staging", "api", limit=200) if r.audit_id != "in-flight-1"
    ]
    assert len(records) == 50
    assert {r.status for r in records} == {Status.ABSORBED}
    assert {r.linked_audit_id for r in records} == {"in-flight-1"}
    assert {r.authenticated_by for r in records} == {"github-hmac"}
    assert len({r.source_event_id for r in records}) == 50
    # and every answer names both ids; nothing was started
    assert {a["status"] for a in answers} == {"absorbed", "duplicate"}
    assert sum(a["status"] == "absorbed" for a in answers) == 50
    assert {a["linked_audit_id"] for a in answers} == {"in-flight-1"}
    assert {a["audit_id"] for a in answers} == {r.audit_id for r in records}
    assert running() == "api:4"


@pytest.fixture
def through(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the receiver's AWS clients (built lazily) at another endpoint."""

    def point(url: str) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)

    return point


def test_throttling_is_retried_then_503(world: Config, aws: str, through: Any) -> None:
    # GIVEN DynamoDB throttling every request at intake
    with faulty_proxy(aws, lambda n: True, THROTTLED) as (url, stats):
        through(url)
        rx = Receiver(world)
        try:
            # WHEN a signed failure arrives
            resp = rx.github(failed_run())
            # THEN retried (bounded), then 503 JSON with Retry-After; nothing started
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"].isdigit()
            assert resp.json()["status"] == "error"
            assert "retry later" in resp.json()["message"]
            assert 3 <= stats.injected <= 10
            # and readiness says not ready, liveness still alive
            ready = rx.client.get("/readyz")
            assert ready.status_code == 503 and "Retry-After" in ready.headers
            assert rx.client.get("/healthz").status_code == 200
        finally:
            rx.stop()
    through(aws)
    assert running() == "api:4"


def test_a_short_throttle_is_absorbed_by_retries(world: Config, aws: str, through: Any) -> None:
    # GIVEN DynamoDB throttles the first two requests only
    with faulty_proxy(aws, lambda n: n <= 2, THROTTLED) as (url, stats):
        through(url)
        rx = Receiver(world)
        try:
            # WHEN a signed failure arrives  THEN the retries carry it through
            resp = rx.github(failed_run())
            assert resp.status_code == 202, resp.text
            assert stats.injected == 2
            rx.wait()
        finally:
            rx.stop()
    through(aws)
    assert running() == "api:3"


def test_missing_audit_table_is_503_and_not_ready(
    aws: str, prefect_server: None, tmp_path: Path
) -> None:
    # GIVEN create_tables: false and no tables
    sandbox.seed()

    def no_create(data: dict[str, Any]) -> None:
        data["stores"]["create_tables"] = False

    config = edit_config(write_config(tmp_path / "config.yaml"), no_create)
    for table in (config.stores.audit_table, config.stores.history_table):
        with contextlib.suppress(Exception):  # not there: fine
            Runtime(config).audit.client.delete_table(TableName=table)
    rx = Receiver(config)
    try:
        # WHEN a request arrives  THEN 503 naming the fix, with Retry-After
        resp = rx.github(failed_run())
        assert resp.status_code == 503 and "Retry-After" in resp.headers, resp.text
        ready = rx.client.get("/readyz")
        assert ready.status_code == 503
        assert "create_tables" in ready.json()["message"]
        assert rx.client.get("/healthz").status_code == 200
    finally:
        rx.stop()


def test_aws_unreachable_is_503(world: Config, through: Any) -> None:
    # GIVEN an AWS endpoint nobody listens on
    through(f"http://127.0.0.1:{free_port()}")
    rx = Receiver(world)
    try:
        resp = rx.github(failed_run())
        assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
        assert rx.client.get("/readyz").status_code == 503
    finally:
        rx.stop()


def body(**fields: Any) -> dict[str, Any]:
    return {
        "environment": "staging",
        "rollback_type": "quick",
        "user_id": "alice",
        "reason": "checkout errors",
        "dry_run": True,
    } | fields


def test_idempotency_key_with_another_body_is_422(receiver: Receiver) -> None:
    headers = receiver.bearer() | {"Idempotency-Key": "incident-42"}
    # GIVEN a request accepted under a key
    first = receiver.post("/rollback", json=body(), headers=headers)
    assert first.status_code == 200, first.text
    # WHEN the same key comes with the same body  THEN "already initiated", same audit
    again = receiver.post("/rollback", json=body(), headers=headers)
    assert again.json()["message"] == "Rollback already initiated"
    assert again.json()["data"]["audit_id"] == first.json()["data"]["audit_id"]
    # WHEN it comes with another body  THEN 422 naming what differs
    other = receiver.post("/rollback", json=body(image_tag="v1", reason="x"), headers=headers)
    assert other.status_code == 422, other.text
    assert "Idempotency-Key" in other.json()["message"]
    assert "to" in other.json()["message"] and "reason" in other.json()["message"]
    receiver.wait()
    # and after a restart (no memory), the stored fingerprint still tells
    fresh = Receiver(receiver.config, environ={"TEST_API_TOKEN": receiver.token})
    try:
        other = fresh.post("/rollback", json=body(user_id="mallory"), headers=headers)
        assert other.status_code == 422 and "requested_by" in other.json()["message"]
    finally:
        fresh.stop()
