"""Every deployment of prefect.yaml, run once through a real worker, the way users reach it.

The real local stack (``devstack.stack.up``): the moto sandbox, a `prefect server
start` (SQLite), `prefect deploy --all`, a process worker and the receiver in deployment
mode. A worker loads each entrypoint as a script, with ``flows/`` on the import path, so a
module that shadows a package, or any import that only works from the repository root,
fails here and nowhere else. Each run must reach its final state *and* leave its mark:
the service moved, the report files written, the guard's tick recorded.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.sandbox import CLUSTER, free_port
from devstack.stack import Options, Stack, down, up
from tests.servers import BusyRetry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RUN_TIMEOUT_S = 240  # a busy 2-core machine: a process worker needs 3-4 s CPU per run
DEPLOYMENTS = {
    "rollback-manual": "rollback/rollback-manual",
    "rollback-auto": "rollback/rollback-auto",
    "metrics-report-daily": "metrics-report/metrics-report-daily",
    "metrics-report-weekly": "metrics-report/metrics-report-weekly",
    "health-guard": "health-guard/health-guard",
}
REPORT_DAYS = {"metrics-report-daily": 30, "metrics-report-weekly": 7}


# -- the world -----------------------------------------------------------------------------
class _Healthy(BaseHTTPRequestHandler):
    """The guarded service's health URL: always 200."""

    hits = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits += 1
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def health_url() -> Iterator[str]:
    # Started before the stack and stopped after it: the scheduled guard runs every
    # minute, and a dead health URL would make it roll staging back.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, health_url: str) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        sandbox=True,  # every deployment: prefect deploy --all
        api_port=free_port(),
        receiver_port=free_port(),
        moto_port=free_port(),
        quiet=True,
    )
    try:
        stack = up(opts)
        _guard(Path(stack.config), health_url)
        yield stack
    finally:
        down(state)


def _guard(config: Path, url: str) -> None:
    """Put staging/api under the health guard (flow runs read the config when they start;
    the file is replaced atomically so a run starting now never reads half of it)."""
    data = yaml.safe_load(config.read_text())
    data["health_guard"] = {"services": [{"environment": "staging", "service": "api", "url": url}]}
    tmp = config.with_name(config.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(config)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30, transport=BusyRetry()) as client:
        yield client


@pytest.fixture(scope="module")
def deployments(api: httpx.Client) -> dict[str, dict[str, Any]]:
    found = {}
    for name, path in DEPLOYMENTS.items():
        resp = api.get(f"/deployments/name/{path}")
        assert resp.status_code == 200, f"{path} not deployed: {resp.text[:300]}"
        found[name] = resp.json()
    return found


@pytest.fixture(scope="module")
def runs(stack: Stack, api: httpx.Client, deployments: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One run of every deployment, started together (the worker runs them side by
    side): four from the UI's Run button, rollback-auto from the receiver's API. The
    weekly report waits for the daily one: report file names carry the window's end to
    the second but not its length, so two reports ending in the same second overwrite
    each other's files."""
    started: dict[str, Any] = {
        "rollback-manual": _create_run(
            api,
            deployments["rollback-manual"],
            {
                "environment": "prod",
                "service": "api",
                "reason": "every-deployment test",
                "requested_by": "deployment-test",
                "dry_run": False,
            },
        ),
        "rollback-auto": _post_rollback(stack),
    }
    for name in ("health-guard", "metrics-report-daily", "metrics-report-weekly"):
        if name == "metrics-report-weekly":
            _wait_state(api, started["metrics-report-daily"], FINAL)
        # Quick Run: the deployment's own parameters
        started[name] = _create_run(api, deployments[name], deployments[name]["parameters"])
    return started


@pytest.fixture(autouse=True)
def _sandbox_aws(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process reads the sandbox's AWS (ECS, the stores) like the flow runs do."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, stack.env[key])
    monkeypatch.setenv("AWS_DEFAULT_REGION", stack.env["AWS_DEFAULT_REGION"])


# -- the tests -----------------------------------------------------------------------------
def test_manual_rollback_pauses_then_rolls_prod_back(
    api: httpx.Client, runs: dict[str, Any], stack: Stack
) -> None:
    # GIVEN a run of rollback-manual for prod/api (protected) from the UI
    run_id = runs["rollback-manual"]
    # WHEN it pauses for the confirmation and the right text is typed into the form
    paused = _wait_state(api, run_id, {"PAUSED"} | FINAL)
    assert paused["type"] == "PAUSED", paused
    resumed = api.post(
        f"/flow_runs/{run_id}/resume", json={"run_input": {"confirmation": "ROLLBACK-PROD"}}
    )
    resumed.raise_for_status()
    assert resumed.json()["status"] == "ACCEPT", resumed.json()
    # THEN the run completes, ECS runs api:3 again and the audit says succeeded
    state = _wait_state(api, run_id, FINAL)
    assert state["type"] == "COMPLETED", state
    assert _ecs_task_definition("api").endswith("api:3")
    (record,) = [r for r in _runtime(stack).audit.recent("prod", "api") if r.flow_run_id == run_id]
    assert record.status.value == "succeeded"


def test_auto_rollback_from_the_receiver_rolls_staging_back(
    api: httpx.Client, runs: dict[str, Any], stack: Stack
) -> None:
    # GIVEN POST /rollback for staging on the receiver, which started rollback-auto
    accepted = runs["rollback-auto"]
    run_id = accepted["workflow_run_id"]
    deployment_id = api.get(f"/flow_runs/{run_id}").json()["deployment_id"]
    assert api.get(f"/deployments/{deployment_id}").json()["name"] == "rollback-auto"
    # WHEN the worker runs it
    state = _wait_state(api, run_id, FINAL)
    # THEN it completes, api-staging is back on api:3 and the audit says succeeded
    assert state["type"] == "COMPLETED", state
    assert _ecs_task_definition("api-staging").endswith("api:3")
    record = _runtime(stack).audit.get(accepted["audit_id"])
    assert record is not None and record.status.value == "succeeded"
    assert record.flow_run_id == run_id


@pytest.mark.parametrize("name", sorted(REPORT_DAYS))
def test_report_writes_its_files(
    api: httpx.Client, runs: dict[str, Any], stack: Stack, name: str
) -> None:
    # GIVEN a Quick Run of the report deployment (every environment)
    run_id = runs[name]
    # WHEN the worker runs it
    state = _wait_state(api, run_id, FINAL)
    # THEN it completes and wrote JSON, markdown and a chart per environment into the
    # sandbox config's reports.out_dir, each stats file over the deployment's window
    assert state["type"] == "COMPLETED", state
    out_dir = Path(_runtime(stack).config.reports.out_dir or "")
    assert out_dir.is_absolute() and out_dir.is_relative_to(stack.state_dir)
    written = _wait_logged_files(api, run_id, count=2)
    for env in ("prod", "staging"):
        files = [Path(p) for p in written[env]]
        assert {p.suffix for p in files} == {".json", ".md", ".png"}, files
        for path in files:
            assert path.parent == out_dir and path.stat().st_size > 0, path
        (stats,) = [p for p in files if p.name.startswith("deployment-stats-")]
        document = json.loads(stats.read_text())
        assert document["environment"] == env
        assert document["window"]["days"] == REPORT_DAYS[name], stats


def test_health_guard_records_a_healthy_probe(
    api: httpx.Client, runs: dict[str, Any], stack: Stack, health_url: str
) -> None:
    # GIVEN staging/api under the health guard, its health URL answering 200
    run_id = runs["health-guard"]
    # WHEN the guard's run ticks
    state = _wait_state(api, run_id, FINAL)
    # THEN it completes, the URL was probed and the store holds a healthy tick for it
    assert state["type"] == "COMPLETED", state
    assert _Healthy.hits >= 1
    from rollback.stores.health_state import HealthStateStore

    health = HealthStateStore(_runtime(stack).config.stores.audit_table).get("staging", "api")
    assert health.failures == 0 and health.since is None
    assert f"health_url: {health_url}: HTTP 200" in health.detail
    messages = _logs(api, [run_id])
    assert any("staging/api health_url" in m and "pass" in m for m in messages), messages


def test_no_run_crashed_and_no_import_error(
    api: httpx.Client, runs: dict[str, Any], deployments: dict[str, dict[str, Any]]
) -> None:
    # GIVEN every run above at its end (and whatever the schedules started meanwhile)
    ids = [runs[n] for n in ("rollback-manual", *REPORT_DAYS, "health-guard")]
    for run_id in [*ids, runs["rollback-auto"]["workflow_run_id"]]:
        _wait_state(api, run_id, FINAL)
    everything = api.post(
        "/flow_runs/filter",
        json={"deployments": {"id": {"any_": [d["id"] for d in deployments.values()]}}},
    ).json()
    # THEN no run of any deployment crashed
    crashed = [(r["name"], r["state"]["message"]) for r in everything if _type(r) == "CRASHED"]
    assert not crashed
    # AND the report and guard runs (the ones a shadowed package broke) logged no ImportError
    loaded = {deployments[n]["id"] for n in (*REPORT_DAYS, "health-guard")}
    started = [r["id"] for r in everything if r["deployment_id"] in loaded and r["start_time"]]
    assert {runs[n] for n in (*REPORT_DAYS, "health-guard")} <= set(started)
    messages = _logs(api, started)
    assert messages and not [m for m in messages if "ImportError" in m]


# -- how users reach the deployments -------------------------------------------------------
def test_a_forged_automatic_run_of_rollback_auto_still_asks_a_person(
    api: httpx.Client, deployments: dict[str, dict[str, Any]], stack: Stack
) -> None:
    # GIVEN someone with access to the Prefect API starts rollback-auto for prod/api
    # with parameters that claim a GitHub webhook (no entrance claimed that event)
    before = _ecs_task_definition("api")
    forged = {
        "environment": "prod",
        "service": "api",
        "reason": "forged: skip the confirmation",
        "requested_by": "github:octocat",
        "trigger": "webhook",
        "source_event_id": "github:forged-delivery",
        "authenticated_by": "github-hmac",
    }
    run_id = _create_run(api, deployments["rollback-auto"], {"request": forged})
    # WHEN the worker runs it
    # THEN it is a manual request: the protected environment pauses for the typed text
    paused = _wait_state(api, run_id, {"PAUSED"} | FINAL)
    assert paused["type"] == "PAUSED", paused
    (record,) = [r for r in _runtime(stack).audit.recent("prod", "api") if r.flow_run_id == run_id]
    assert record.trigger == "manual"
    assert record.authenticated_by == "prefect-deployment:rollback-auto"
    # AND a wrong answer refuses it: nothing changed
    api.post(f"/flow_runs/{run_id}/resume", json={"run_input": {"confirmation": "no"}})
    state = _wait_state(api, run_id, FINAL)
    assert state["type"] == "FAILED" and state["name"] == "Refused", state
    assert _ecs_task_definition("api") == before


def _create_run(api: httpx.Client, deployment: dict[str, Any], parameters: dict[str, Any]) -> str:
    """What the UI's Run → Quick/Custom Run sends."""
    body = {
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"},
        "parameters": parameters,
        "enforce_parameter_schema": True,
    }
    resp = api.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _post_rollback(stack: Stack) -> dict[str, Any]:
    """The dashboards' API: POST /rollback on the receiver, bearer token."""
    resp = httpx.post(
        f"{stack.receiver_url}/rollback",
        headers={"Authorization": f"Bearer {stack.token()}"},
        json={
            "environment": "staging",
            "rollback_type": "quick",
            "user_id": "deployment-test",
            "reason": "every-deployment test: staging v4 is bad",
        },
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    assert data["workflow_run_id"], data
    return data


# -- what happened -------------------------------------------------------------------------
def _type(run: dict[str, Any]) -> str | None:
    return run["state"]["type"] if run.get("state") else None


def _wait_state(api: httpx.Client, run_id: str, types: set[str]) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = api.get(f"/flow_runs/{run_id}").json()["state"]
        if state and state["type"] in types:
            return state
        assert time.monotonic() < deadline, f"run {run_id} still {state and state['type']}"
        time.sleep(0.5)


def _logs(api: httpx.Client, run_ids: list[str]) -> list[str]:
    messages: list[str] = []
    while True:  # pages of 200
        page = api.post(
            "/logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": run_ids}},
                "sort": "TIMESTAMP_ASC",
                "limit": 200,
                "offset": len(messages),
            },
        ).json()
        messages += [str(log["message"]) for log in page]
        if len(page) < 200:
            return messages


def _wait_logged_files(api: httpx.Client, run_id: str, count: int) -> dict[str, list[str]]:
    """The files the run says it wrote, per environment ("<env>: wrote a, b, c"). Logs
    reach the server in batches, possibly just after the run's final state."""
    deadline = time.monotonic() + 30
    while True:
        written = {}
        for message in _logs(api, [run_id]):
            env, sep, paths = message.partition(": wrote ")
            if sep:
                written[env] = paths.split(", ")
        if len(written) >= count or time.monotonic() > deadline:
            return written
        time.sleep(0.5)


def _runtime(stack: Stack) -> Any:
    from rollback.config import load_config
    from rollback.runtime import Runtime

    return Runtime(load_config(stack.config))


def _ecs_task_definition(service: str) -> str:
    import boto3

    ecs = boto3.client("ecs", region_name=os.environ["AWS_DEFAULT_REGION"])
    found = ecs.describe_services(cluster=CLUSTER, services=[service])["services"]
    return str(found[0]["taskDefinition"])
