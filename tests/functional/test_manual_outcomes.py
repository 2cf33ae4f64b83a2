"""What a person sees of a rollback's outcome: the run's final state, the artifact, a dry
run. Real flow runs on the session Prefect server against the moto sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.outcome import requested_rollback, result_of
from rollback.models import RollbackRequest
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.usefixtures("prefect_server")

UI = "http://ui.example:4200"


def _with_ui(data: dict[str, Any]) -> None:
    data["prefect_ui_url"] = UI


def _run(config: Path, **fields: Any) -> Any:
    fields.setdefault("environment", "staging")
    fields.setdefault("service", "api")
    fields.setdefault("requested_by", "tester")
    fields.setdefault("reason", "outcome test")
    request = RollbackRequest(**fields)
    return requested_rollback(request=request, config_path=str(config), return_state=True)


def _artifact(key: str) -> Any:
    from prefect.artifacts import Artifact

    return Artifact.get(key)


def test_a_refused_rollback_ends_red_with_the_refusal_as_its_message(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN prod (protected) and a wrong confirmation text
    config = make_world(tmp_path)
    # WHEN the rollback runs
    state = _run(config, environment="prod", confirmation="yes please")
    # THEN the run is Failed, named Refused, and its message says why; the outcome the
    # CLI prints is unchanged
    assert state.is_failed() and state.name == "Refused", state
    assert "confirmation" in (state.message or "")
    assert result_of(state)["status"] == "refused"
    assert service_task_definition("api") == "api:4"


def test_a_rollback_that_did_what_was_asked_is_completed(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    state = _run(config)
    assert state.is_completed(), state
    assert result_of(state)["status"] == "succeeded"
    assert "rollback succeeded" in (state.message or "")


def test_a_dry_run_of_a_protected_environment_asks_nothing_and_says_dry_run(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN prod (protected), a dry run and no confirmation
    config = make_world(tmp_path)
    # WHEN it runs
    state = _run(config, environment="prod", dry_run=True)
    result = result_of(state)
    # THEN it plans (a dry run changes nothing, so there is nothing to confirm)
    assert result["status"] == "planned", result
    confirmation = next(c for c in result["checks"] if c["name"] == "confirmation")
    assert confirmation["passed"] and "dry run" in confirmation["detail"]
    # and every place says DRY RUN
    assert "DRY RUN" in result["headline"] and "DRY RUN" in (state.message or "")
    assert service_task_definition("api") == "api:4"


def test_each_run_has_its_own_artifact_with_a_v2_link_and_an_ordered_timeline(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN two dry runs of the same service
    config = make_world(tmp_path, edit=_with_ui)
    first = result_of(_run(config, dry_run=True))
    second = result_of(_run(config, dry_run=True))
    # WHEN their artifacts are read by the run's audit id
    one = _artifact(f"rollback-{first['audit_id']}")
    two = _artifact(f"rollback-{second['audit_id']}")
    # THEN each run kept its own, linking to its run in the V2 UI
    assert one is not None and two is not None
    assert first["audit_id"].lower() in one.key and one.key != two.key
    assert f"{UI}/v2/runs/flow-run/{first['flow_run_id']}" in one.data
    assert "DRY RUN" in one.data
    # and the timeline is in the order things happened: the request, the plan, the end
    timeline = one.data.split("## Timeline", 1)[1]
    assert timeline.index("requested by") < timeline.index("plan:")
    assert timeline.index("plan:") < timeline.index("rollback planned")


def test_the_cli_run_ends_refused_and_its_json_status_is_unchanged(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    import json
    import subprocess
    import sys
    from uuid import UUID

    from prefect import get_client

    from tests.conftest import cli_env

    # GIVEN a CLI rollback that is refused (the service already runs the target)
    config = make_world(tmp_path)
    rollback = str(Path(sys.executable).with_name("rollback"))
    args = ["run", "--config", str(config), "--env", "staging", "--service", "api"]
    out = subprocess.run(
        [rollback, *args, "--to", "api:4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(PREFECT_API_URL=prefect_api_url),
    )
    # THEN the exit code and the JSON status are what they were
    assert out.returncode == 3, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == "refused"
    # and its flow run is a red "Refused" that says why
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(answer["flow_run_id"])).state
    assert state is not None and state.is_failed() and state.name == "Refused", state
    assert "already runs" in (state.message or "")
