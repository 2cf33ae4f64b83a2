"""The person's form (rollback-manual) and how outcomes look in Prefect: pure pieces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.utilities.callables import parameter_schema

from devstack.forms import pick_lists
from devstack.sandbox import demo_config
from flows.manual import manual_rollback
from flows.outcome import outcome_state
from rollback.config import parse_config


def _config(tmp_path: Path) -> Any:
    return parse_config(demo_config(tmp_path / "config.yaml"), "config.yaml")


def _result(status: str, reason: str | None = None) -> dict[str, Any]:
    return {"status": status, "headline": f"Rollback {status}: prod/api", "reason": reason}


def test_the_form_offers_only_what_a_person_decides(tmp_path: Path) -> None:
    # GIVEN the demo config (prod and staging, each with api)
    config = _config(tmp_path)
    # WHEN the form of rollback-manual is built from it
    deployed = parameter_schema(manual_rollback.fn).model_dump_for_openapi()
    schema = pick_lists(deployed, config)
    props = schema["properties"]
    # THEN only a person's fields, each described; no trigger, confirmation, ids or path
    assert set(props) == {"environment", "service", "to", "reason", "requested_by", "dry_run"}
    assert all(p.get("description") for p in props.values())
    # pick-lists of the configured names; reason and requested_by required, non-empty
    assert props["environment"]["enum"] == sorted(config.environments)
    assert "api" in props["service"]["enum"]
    assert set(schema["required"]) == {"environment", "service", "reason", "requested_by"}
    assert props["reason"]["minLength"] == 1 and props["requested_by"]["minLength"] == 1
    # no "str | None" toggles: every field has one plain type
    assert all("anyOf" not in p for p in props.values())
    assert "default" not in props["requested_by"]


def test_outcomes_look_like_what_they_are() -> None:
    # GIVEN the outcome of each kind  WHEN mapped to the run's final state
    done = outcome_state(_result("succeeded"))
    planned = outcome_state(_result("planned"))
    refused = outcome_state(_result("refused", "confirmation: wrong text"))
    failed = outcome_state(_result("failed", "stabilization: timed out"))
    # THEN only what did what was asked is Completed; a refusal is a red "Refused" whose
    # message says why; a failure is Failed with its reason; the data is the outcome
    assert done.is_completed() and planned.is_completed()
    assert refused.is_failed() and refused.name == "Refused"
    assert "confirmation: wrong text" in (refused.message or "")
    assert failed.is_failed() and failed.name == "Failed"
    assert "stabilization: timed out" in (failed.message or "")
    assert refused.data["status"] == "refused"  # type: ignore[index]


def test_every_deployment_describes_every_parameter() -> None:
    import importlib

    import yaml
    from prefect.utilities.callables import parameter_schema

    # GIVEN every deployment prefect.yaml declares
    root = Path(__file__).resolve().parents[2]
    deployments = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    for deployment in deployments:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        # WHEN the UI builds its form from the entry point's parameters
        schema = parameter_schema(getattr(module, name).fn).model_dump_for_openapi()
        # THEN each field says what it is
        undescribed = [p for p, spec in schema["properties"].items() if not spec.get("description")]
        assert not undescribed, (deployment["name"], undescribed)
