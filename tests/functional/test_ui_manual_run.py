"""Manual rollbacks the way the Prefect UI does them, against the real local stack.

A real `prefect server start` (SQLite, its own PREFECT_HOME), `prefect deploy` of
rollback-manual from prefect.yaml, a process worker and the moto sandbox. Every call
below is one the UI makes over the REST API: read the deployment's form schema, create a
run with parameters, read the paused run's input schema and description, resume it with
the typed text.
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FORM_FIELDS = ("environment", "service", "to", "reason", "requested_by", "dry_run")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        sandbox=True,
        deployments=("rollback-manual",),
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
    with httpx.Client(base_url=stack.api_url, timeout=30, transport=_BusyRetry()) as client:
        yield client


class _BusyRetry(httpx.HTTPTransport):
    """A busy SQLite server answers 503 for a moment; Prefect's own client (and the UI)
    retry that, so the test's client does too."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(6):
            response = super().handle_request(request)
            if response.status_code not in (429, 503):
                return response
            response.read()
            response.close()
            time.sleep(0.25 * 2**attempt)
        return response


@pytest.fixture(scope="module")
def deployment(api: httpx.Client) -> dict[str, Any]:
    resp = api.get("/deployments/name/rollback/rollback-manual")
    resp.raise_for_status()
    return resp.json()


def test_the_form_has_every_request_field_with_its_description(
    deployment: dict[str, Any], stack: Stack
) -> None:
    # GIVEN the deployment as prefect deploy registered it
    schema = deployment["parameter_openapi_schema"]
    # WHEN the UI builds the Custom Run form from its parameter schema
    request = schema["definitions"]["RollbackRequest"]
    # THEN every field of the request is there, described, and only the
    # environment and service are required
    for name in FORM_FIELDS:
        assert request["properties"][name].get("description"), name
    assert set(request["required"]) == {"environment", "service"}
    assert schema["required"] == ["request"]
    assert deployment["job_variables"]["env"]["ROLLBACK_CONFIG"] == stack.config
    assert deployment["work_pool_name"] == "rollback-pool"


def test_a_form_trigger_never_makes_a_manual_run_automatic(
    api: httpx.Client, deployment: dict[str, Any], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Custom Run of prod/api whose parameters claim an automatic trigger
    run_id = _create_run(api, deployment, reason="ui test: forged trigger", trigger="webhook")
    # WHEN it runs on the worker
    # THEN it still pauses for the typed confirmation: no entrance granted "webhook"
    paused = _wait_state(api, run_id, {"PAUSED", "COMPLETED", "FAILED", "CRASHED"})
    assert paused["type"] == "PAUSED", paused
    _use_sandbox(monkeypatch, stack)
    record = _audit_of(stack, run_id)
    assert record.trigger == "manual"
    assert record.authenticated_by == "prefect-deployment:rollback-manual"
    _resume(api, run_id, "no")  # refused: nothing changes
    _wait_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED"})
    assert _ecs_task_definition("api").endswith("api:4")


def test_wrong_confirmation_is_refused_and_changes_nothing(
    api: httpx.Client, deployment: dict[str, Any], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Custom Run of prod/api (a protected environment) from the form
    run_id = _create_run(api, deployment, reason="ui test: wrong text")
    # WHEN it pauses and someone types the wrong text into the resume form
    paused = _wait_state(api, run_id, {"PAUSED"})
    schema, description = _input_form(api, paused)
    assert "confirmation" in schema["properties"]
    assert "ROLLBACK-PROD" in description and "api:4" in description  # the plan
    # (while it waits, the run holds the service's global concurrency slot)
    limit = api.get("/v2/concurrency_limits/rollback-prod-api").json()
    assert limit["active_slots"] == 1
    _resume(api, run_id, "rollback-prod please")
    # THEN the run ends refused, ECS still runs the bad version and the audit says why
    _wait_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED"})
    assert api.get("/v2/concurrency_limits/rollback-prod-api").json()["active_slots"] == 0
    _use_sandbox(monkeypatch, stack)
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
    state = _wait_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED"})
    assert state["type"] == "COMPLETED", state
    _use_sandbox(monkeypatch, stack)
    assert _audit_of(stack, run_id).status.value == "succeeded"
    assert _ecs_task_definition("api").endswith("api:3")


def test_unknown_service_fails_at_once_with_a_clear_message(
    api: httpx.Client, deployment: dict[str, Any]
) -> None:
    # GIVEN a form filled with a service the config does not know
    run_id = _create_run(api, deployment, reason="typo", service="apii")
    # WHEN the run starts
    state = _wait_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED"})
    # THEN it fails without pausing, and the message names the service and the known ones
    assert state["type"] == "FAILED"
    assert "unknown service 'apii'" in state["message"]
    assert "api" in state["message"]


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
def _create_run(
    api: httpx.Client,
    deployment: dict[str, Any],
    reason: str,
    service: str = "api",
    **fields: Any,
) -> str:
    """What Custom Run → Submit sends."""
    body = {
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"},
        "parameters": {
            "request": {
                "environment": "prod",
                "service": service,
                "reason": reason,
                "requested_by": "ui-test",
                "dry_run": False,
                **fields,
            }
        },
        "enforce_parameter_schema": True,
    }
    resp = api.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _wait_state(api: httpx.Client, run_id: str, types: set[str], timeout: float = 90) -> Any:
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
