"""Manual rollbacks the way the Prefect UI does them, against the real local stack.

A real `prefect server start` (SQLite, its own PREFECT_HOME), `prefect deploy` of
rollback-manual and rollback-auto from prefect.yaml (the manual form published with the
config's pick-lists), a process worker, the receiver in deployment mode and the moto
sandbox. Every call below is one the UI makes over the REST API: read the deployment's
form schema, create a run with parameters, read the paused run's state, input schema,
description and artifact, resume it with the typed text. (The same path in a real
browser: tests/functional/test_ui_browser.py.)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sandbox import free_port
from devstack.stack import Options, Stack, down, up
from tests.servers import BusyRetry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FORM_FIELDS = ("environment", "service", "to", "reason", "requested_by", "dry_run")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        sandbox=True,
        deployments=("rollback-manual", "rollback-auto"),
        api_port=free_port(),
        receiver_port=free_port(),
        moto_port=free_port(),
        quiet=True,
    )
    try:
        yield up(opts)
    finally:
        down(state)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30, transport=BusyRetry()) as client:
        yield client


@pytest.fixture(scope="module")
def deployment(api: httpx.Client) -> dict[str, Any]:
    resp = api.get("/deployments/name/rollback/rollback-manual")
    resp.raise_for_status()
    return resp.json()


def test_the_form_has_only_a_persons_fields_with_pick_lists(
    deployment: dict[str, Any], stack: Stack
) -> None:
    # GIVEN the deployment as the stack's deploy step registered it
    schema = deployment["parameter_openapi_schema"]
    # WHEN the UI builds the Custom Run form from its parameter schema
    props = schema["properties"]
    # THEN only what a person decides, each described; environment and service are
    # pick-lists of the config's names; reason and requested_by are required
    assert set(props) == set(FORM_FIELDS)
    for name in FORM_FIELDS:
        assert props[name].get("description"), name
    assert props["environment"]["enum"] == ["prod", "staging"]
    assert "api" in props["service"]["enum"]
    assert set(schema["required"]) == {"environment", "service", "reason", "requested_by"}
    assert deployment["job_variables"]["env"]["ROLLBACK_CONFIG"] == stack.config
    assert deployment["work_pool_name"] == "rollback-pool"


def test_the_form_refuses_fields_that_would_loosen_the_guard(
    api: httpx.Client, deployment: dict[str, Any], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Custom Runs of prod/api that add a trigger, a confirmation, an audit id
    for extra in ({"trigger": "webhook"}, {"confirmation": "ROLLBACK-PROD"}, {"audit_id": "x"}):
        # WHEN the UI (or anyone with the API) submits them
        resp = _submit(api, deployment, _form("ui test: forged", **extra))
        # THEN the server refuses the run: there is no such field
        assert resp.status_code in (409, 422), (extra, resp.text)
    # and a run from the form is manual, whatever anyone wrote
    run_id = _create_run(api, deployment, reason="ui test: manual only")
    paused = _wait_state(api, run_id, {"PAUSED"} | FINAL)
    assert paused["type"] == "PAUSED", paused
    _use_sandbox(monkeypatch, stack)
    record = _audit_of(stack, run_id)
    assert record.trigger == "manual"
    assert record.authenticated_by == "prefect-deployment:rollback-manual"
    _resume(api, run_id, "no")  # refused: nothing changes
    _wait_state(api, run_id, FINAL)
    assert _ecs_task_definition("api").endswith("api:4")


def test_wrong_confirmation_is_refused_and_changes_nothing(
    api: httpx.Client, deployment: dict[str, Any], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Custom Run of prod/api (a protected environment) from the form
    run_id = _create_run(api, deployment, reason="ui test: wrong text")
    # WHEN it pauses
    paused = _wait_state(api, run_id, {"PAUSED"})
    schema, description = _input_form(api, paused)
    assert "confirmation" in schema["properties"]
    assert "ROLLBACK-PROD" in description and "api:4" in description  # the plan
    # THEN the plan is in plain sight: the state message says what it waits for and
    # until when, the run's artifact holds the plan, the log says it too
    message = paused["message"] or ""
    assert "waiting for ROLLBACK-PROD until" in message and "Resume" in message, message
    _use_sandbox(monkeypatch, stack)
    record = _audit_of(stack, run_id)
    plan = _artifact(api, f"rollback-{record.audit_id}")
    assert "Waiting for confirmation" in plan and "api:3" in plan and "same_family" in plan
    timeline = plan.split("## Timeline", 1)[1]
    assert timeline.index("plan:") < timeline.index("waiting for ROLLBACK-PROD")
    _wait_log(api, run_id, "waiting for ROLLBACK-PROD until")
    # (while it waits, the run holds the service's global concurrency slot)
    limit = api.get("/v2/concurrency_limits/rollback-prod-api").json()
    assert limit["active_slots"] == 1
    # WHEN someone types the wrong text into the resume form
    _resume(api, run_id, "rollback-prod please")
    # THEN the run ends a red "Refused" whose message says why, ECS still runs the bad
    # version and the audit says why
    state = _wait_state(api, run_id, FINAL)
    assert (state["type"], state["name"]) == ("FAILED", "Refused"), state
    assert "confirmation" in state["message"]
    assert api.get("/v2/concurrency_limits/rollback-prod-api").json()["active_slots"] == 0
    record = _audit_of(stack, run_id)
    assert record.status.value == "refused"
    assert "confirmation" in (record.outcome_reason or "")
    assert _ecs_task_definition("api").endswith("api:4")


def test_right_confirmation_rolls_back(
    api: httpx.Client, deployment: dict[str, Any], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a paused Custom Run of prod/api
    run_id = _create_run(api, deployment, reason="ui test: right text")
    paused = _wait_state(api, run_id, {"PAUSED"})
    _input_form(api, paused)
    # WHEN the right text is typed
    _resume(api, run_id, "ROLLBACK-PROD")
    # THEN the run completes, the service is back on api:3 and the audit says succeeded
    state = _wait_state(api, run_id, FINAL)
    assert state["type"] == "COMPLETED", state
    _use_sandbox(monkeypatch, stack)
    record = _audit_of(stack, run_id)
    assert record.status.value == "succeeded"
    assert _ecs_task_definition("api").endswith("api:3")
    # and the run's own artifact shows the outcome, the wait as a wait, a V2 link
    report = _artifact(api, f"rollback-{record.audit_id}")
    assert "rollback succeeded" in report and "answered after waiting" in report
    assert f"/v2/runs/flow-run/{run_id}" in report


def test_a_dry_run_asks_nothing_and_says_dry_run(
    api: httpx.Client, deployment: dict[str, Any]
) -> None:
    # GIVEN a dry run of prod/worker (protected) from the form
    run_id = _create_run(api, deployment, reason="ui test: plan", service="worker", dry_run=True)
    # WHEN it runs  THEN it completes without pausing, and says DRY RUN
    state = _wait_state(api, run_id, {"PAUSED"} | FINAL)
    assert state["type"] == "COMPLETED", state
    assert state["message"].startswith("DRY RUN"), state


def test_the_api_says_a_protected_rollback_awaits_confirmation(
    api: httpx.Client, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the receiver in deployment mode (its runs can pause)
    # WHEN the dashboards ask to roll prod back without the confirmation text
    resp = httpx.post(
        f"{stack.receiver_url}/rollback",
        headers={"Authorization": f"Bearer {stack.token()}"},
        json={
            "environment": "prod",
            "service": "worker",
            "rollback_type": "quick",
            "user_id": "alice",
            "reason": "api test: awaiting",
        },
        timeout=30,
    )
    # THEN 202 awaiting_confirmation with the run's link and the deadline, not "initiated"
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "awaiting_confirmation" and "ROLLBACK-PROD" in body["message"]
    assert body["data"]["monitor_url"].endswith(
        f"/v2/runs/flow-run/{body['data']['workflow_run_id']}"
    )
    assert body["data"]["confirm_by"]
    # and the rollback-auto run pauses; a wrong answer ends it Refused
    run_id = body["data"]["workflow_run_id"]
    paused = _wait_state(api, run_id, {"PAUSED"} | FINAL)
    assert paused["type"] == "PAUSED", paused
    _resume(api, run_id, "nope")
    state = _wait_state(api, run_id, FINAL)
    assert (state["type"], state["name"]) == ("FAILED", "Refused"), state


def test_a_typo_cannot_start_a_run(api: httpx.Client, deployment: dict[str, Any]) -> None:
    # GIVEN a form filled with a service the config does not know, or no reason
    for fields in ({"service": "apii"}, {"reason": ""}, {"requested_by": ""}):
        # WHEN it is submitted
        resp = _submit(api, deployment, _form("typo") | fields)
        # THEN the server refuses it: no run, nothing to clean up
        assert resp.status_code in (409, 422), (fields, resp.text)


def test_a_service_not_in_the_environment_fails_at_once_naming_the_known_ones(
    api: httpx.Client, deployment: dict[str, Any]
) -> None:
    # GIVEN staging + worker: both on the pick-lists, but staging has no worker
    run_id = _create_run(api, deployment, reason="typo", environment="staging", service="worker")
    # WHEN the run starts  THEN it fails without pausing, naming the configured ones
    state = _wait_state(api, run_id, FINAL)
    assert state["type"] == "FAILED"
    assert "unknown service 'worker'" in state["message"] and "api" in state["message"]


def test_ui_pages_render(
    stack: Stack, api: httpx.Client, deployment: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN the deployment and one of its runs
    runs = api.post(
        "/flow_runs/filter",
        json={"deployments": {"id": {"any_": [deployment["id"]]}}, "limit": 1},
    ).json()
    assert runs
    pages = {
        "deployment": f"{stack.ui_url}/deployments/deployment/{deployment['id']}",
        "run-form": f"{stack.ui_url}/deployments/deployment/{deployment['id']}/run",
        "flow-run": f"{stack.ui_url}/runs/flow-run/{runs[0]['id']}",
    }
    # WHEN a browser asks for the pages
    for name, url in pages.items():
        resp = httpx.get(url, headers={"Accept": "text/html"}, timeout=30)
        # THEN the UI answers them (a single-page app: the same shell, filled by the API)
        assert resp.status_code == 200, name
        assert "<html" in resp.text.lower(), name
    settings = httpx.get(f"{stack.ui_url}/ui-settings", timeout=30).json()
    assert settings["api_url"] == stack.api_url  # the browser talks to this server
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:  # screenshots for a human to look at; nothing is committed
        for name, url in pages.items():
            shot = tmp_path / f"{name}.png"
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
                + ["--window-size=1400,1000", "--virtual-time-budget=8000"]
                + [f"--screenshot={shot}", url],
                capture_output=True,
                timeout=60,
            )
            assert shot.exists() and shot.stat().st_size > 0, name


# -- the UI's calls ----------------------------------------------------------------------------
def _form(reason: str, **fields: Any) -> dict[str, Any]:
    return {
        "environment": "prod",
        "service": "api",
        "reason": reason,
        "requested_by": "ui-test",
        "dry_run": False,
    } | fields


def _submit(api: httpx.Client, deployment: dict[str, Any], parameters: dict[str, Any]) -> Any:
    """What Custom Run → Submit sends."""
    body = {
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"},
        "parameters": parameters,
        "enforce_parameter_schema": True,
    }
    return api.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)


def _create_run(api: httpx.Client, deployment: dict[str, Any], reason: str, **fields: Any) -> str:
    resp = _submit(api, deployment, _form(reason, **fields))
    resp.raise_for_status()
    return str(resp.json()["id"])


def _artifact(api: httpx.Client, key: str) -> str:
    """The newest version of the artifact ``key`` (the run's Artifacts tab)."""
    found = api.post(
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
    ).json()
    assert found, f"no artifact {key}"
    return str(found[0]["data"])


def _wait_log(api: httpx.Client, run_id: str, text: str, timeout: float = 30) -> None:
    """Logs reach the server in batches (every ~2 s): wait for the line."""
    deadline = time.monotonic() + timeout
    while not any(text in m for m in _logs(api, run_id)):
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.5)


def _logs(api: httpx.Client, run_id: str) -> list[str]:
    logs = api.post(
        "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    ).json()
    return [str(entry["message"]) for entry in logs]


def _wait_state(api: httpx.Client, run_id: str, types: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        state = api.get(f"/flow_runs/{run_id}").json()["state"]
        if state and state["type"] in types:
            return state
        assert time.monotonic() < deadline, f"run {run_id} still {state and state['type']}"
        time.sleep(0.3)


def _input_form(api: httpx.Client, paused: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The resume form: the input schema and the description (the plan)."""
    keyset = paused["state_details"]["run_input_keyset"]
    run_id = paused["state_details"]["flow_run_id"]
    schema = api.get(f"/flow_runs/{run_id}/input/{keyset['schema']}")
    schema.raise_for_status()
    description = api.get(f"/flow_runs/{run_id}/input/{keyset['description']}")
    description.raise_for_status()
    return schema.json(), str(description.json())


def _resume(api: httpx.Client, run_id: str, text: str) -> None:
    resp = api.post(f"/flow_runs/{run_id}/resume", json={"run_input": {"confirmation": text}})
    resp.raise_for_status()
    assert resp.json()["status"] == "ACCEPT", resp.json()


# -- what happened in the sandbox --------------------------------------------------------------
def _use_sandbox(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, stack.env[key])


def _audit_of(stack: Stack, run_id: str) -> Any:
    from rollback.config import load_config
    from rollback.runtime import Runtime

    rt = Runtime(load_config(stack.config))
    records = [r for r in rt.audit.recent("prod", "api", limit=20) if r.flow_run_id == run_id]
    assert len(records) == 1, f"one audit record for run {run_id}"
    return records[0]


def _ecs_task_definition(service: str) -> str:
    import boto3

    ecs = boto3.client("ecs", region_name="us-east-1")
    found = ecs.describe_services(cluster="demo-cluster", services=[service])["services"]
    return str(found[0]["taskDefinition"])
