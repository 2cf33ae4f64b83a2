"""Terraform target: plan parsing, the destroy and drift decisions, and the adapter's
handling of python-terraform (exit codes, warnings, variable precedence)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from python_terraform import IsNotFlagged

from rollback.errors import TargetError, TransientError
from rollback.models import Version
from rollback.targets.base import DESTROY_CHECK, parse_service_config
from rollback.targets.terraform import (
    PlanSummary,
    TerraformCli,
    TerraformServiceConfig,
    TerraformTarget,
    drift_check,
    plan_checks,
    summarize_plan,
)


def change(address: str, *actions: str, mode: str = "managed") -> dict[str, Any]:
    return {"address": address, "mode": mode, "change": {"actions": list(actions)}}


PLAN = {
    "format_version": "1.2",
    "resource_changes": [
        change("terraform_data.same", "no-op"),
        change("terraform_data.app", "update"),
        change("terraform_data.pin", "delete", "create"),
        change("terraform_data.cbd", "create", "delete"),
        change("terraform_data.new", "create"),
        change("terraform_data.old", "delete"),
        change("data.terraform_remote_state.net", "read", mode="data"),
    ],
    "output_changes": {
        "image_tag": {"actions": ["update"]},
        "unchanged": {"actions": ["no-op"]},
    },
}


# -- parsing ---------------------------------------------------------------------------------
def test_summary_counts_like_terraform() -> None:
    # GIVEN a plan with every kind of change WHEN it is summarized
    summary = summarize_plan(PLAN)
    # THEN a replacement counts as one add and one destroy, reads and no-ops not at all
    assert (summary.add, summary.change, summary.destroy) == (3, 1, 3)
    assert summary.destroyed == ("terraform_data.pin", "terraform_data.cbd", "terraform_data.old")
    assert summary.outputs == ("image_tag",)
    assert summary.describe().startswith("3 to add, 1 to change, 3 to destroy: update ")
    assert "replace terraform_data.pin" in summary.describe()
    assert "output image_tag" in summary.describe()


def test_empty_plan_has_no_changes() -> None:
    summary = summarize_plan({"resource_changes": [change("terraform_data.app", "no-op")]})
    assert summary.empty and summary.describe() == "no changes"
    assert summarize_plan({}).empty


def test_long_address_lists_are_shortened() -> None:
    summary = PlanSummary(tuple(("create", f"terraform_data.r{i}") for i in range(25)))
    assert summary.describe().endswith("(+15 more)")


# -- decisions -------------------------------------------------------------------------------
def test_plan_that_destroys_fails_the_destroy_check() -> None:
    checks = {c.name: c for c in plan_checks("image_tag", "v1", summarize_plan(PLAN))}
    assert checks["terraform_plan"].passed
    assert "plan image_tag=v1: 3 to add" in checks["terraform_plan"].detail
    assert not checks[DESTROY_CHECK].passed
    assert "terraform_data.pin" in checks[DESTROY_CHECK].detail
    assert "allow_destroy" in checks[DESTROY_CHECK].detail


def test_plan_without_destroy_passes() -> None:
    summary = PlanSummary((("update", "terraform_data.app"),))
    checks = {c.name: c for c in plan_checks("image_tag", "v1", summary)}
    assert checks[DESTROY_CHECK].passed and checks["terraform_plan"].passed


def test_drift_names_the_addresses() -> None:
    assert drift_check("image_tag", "v1", PlanSummary()).passed
    drift = drift_check("image_tag", "v1", PlanSummary((("update", "terraform_data.app"),)))
    assert not drift.passed and "update terraform_data.app" in drift.detail


# -- config ------------------------------------------------------------------------------------
def test_config_defaults_and_unknown_keys() -> None:
    cfg = parse_service_config({"type": "terraform", "working_dir": "/srv/stack"})
    assert isinstance(cfg, TerraformServiceConfig)
    assert (cfg.var, cfg.workspace, cfg.backend_config, cfg.var_files) == (
        "image_tag",
        None,
        {},
        [],
    )
    with pytest.raises(ValueError, match="varr: unknown key"):
        parse_service_config({"type": "terraform", "working_dir": "/x", "varr": "tag"})


# -- the adapter, with a stand-in for python_terraform.Terraform ------------------------------
class FakeTerraform:
    """Answers like python_terraform.Terraform, and warns on non-zero exit codes as it
    does (Logger.warn is deprecated)."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.var_files_seen: list[dict[str, Any]] = []

    def _answer(self, name: str, kwargs: dict[str, Any]) -> tuple[int, str, str]:
        self.calls.append((name, kwargs))
        for path in kwargs.get("var_file") or []:
            text = Path(path).read_text() if Path(path).exists() else ""
            self.var_files_seen.append({"path": path, "text": text})
        rc, out, err = self.answers.get(name, (0, "", ""))
        if rc != 0:
            warnings.warn("The 'warn' method is deprecated", DeprecationWarning, stacklevel=2)
        return rc, out, err

    def plan(self, **kwargs: Any) -> tuple[int, str, str]:
        return self._answer("plan", kwargs)

    def apply(self, **kwargs: Any) -> tuple[int, str, str]:
        return self._answer("apply", kwargs)

    def init(self, **kwargs: Any) -> tuple[int, str, str]:
        return self._answer("init", kwargs)

    def cmd(self, name: str, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        return self._answer(name, kwargs)


def test_plan_exit_code_2_means_changes_and_never_warns(tmp_path: Path) -> None:
    # GIVEN terraform answers plan with exit code 2 (changes present)
    fake = FakeTerraform({"plan": (2, "", "")})
    cli = TerraformCli("/srv/stack", var_files=["common.tfvars"], terraform=fake)
    # WHEN a plan runs under "warnings are errors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        changed = cli.plan({"image_tag": "v1"}, tmp_path / "p.tfplan")
    # THEN it reports changes, and our variable file comes after the configured ones
    assert changed is True
    paths = [seen["path"] for seen in fake.var_files_seen]
    assert paths[0] == "common.tfvars" and paths[-1].endswith(".tfvars.json")
    assert json.loads(fake.var_files_seen[-1]["text"]) == {"image_tag": "v1"}
    assert fake.calls[0][1]["out"] == str(tmp_path / "p.tfplan")


def test_failures_are_translated() -> None:
    fake = FakeTerraform(
        {
            "apply": (1, "", "Error: boom\n  in resource x"),
            "output": (1, "", "Error acquiring the state lock"),
        }
    )
    cli = TerraformCli("/srv/stack", terraform=fake)
    with pytest.raises(
        TargetError,
        match=r"terraform apply in /srv/stack failed \(exit 1\): Error: boom in resource x",
    ):
        cli.apply({"image_tag": "v1"})
    with pytest.raises(TransientError, match="state lock"):
        cli.outputs()


def test_outputs_are_values_by_name() -> None:
    out = json.dumps({"image_tag": {"value": "v7", "type": "string", "sensitive": False}})
    cli = TerraformCli("/srv/stack", terraform=FakeTerraform({"output": (0, out, "")}))
    assert cli.outputs() == {"image_tag": "v7"}


def test_a_plan_that_errors_is_a_failed_check_not_a_crash() -> None:
    # GIVEN a target whose plan fails (e.g. a syntax error in the configuration)
    fake = FakeTerraform({"plan": (1, "", "Error: Unsupported argument")})
    cfg = TerraformServiceConfig(type="terraform", working_dir="/srv/stack")
    target = TerraformTarget(cfg, cli=TerraformCli("/srv/stack", terraform=fake))
    # WHEN the checks run THEN the plan check fails with terraform's message
    checks = target.check(Version("v2"), Version("v1"))
    assert [(c.name, c.passed) for c in checks] == [("terraform_plan", False)]
    assert "Unsupported argument" in checks[0].detail
    # and init ran first, without python-terraform's -reconfigure default
    assert fake.calls[0][0] == "init"
    assert fake.calls[0][1]["reconfigure"] is IsNotFlagged


def test_versions_are_tags_without_order() -> None:
    cfg = TerraformServiceConfig(type="terraform", working_dir="/srv/stack", var="release")
    target = TerraformTarget(cfg, cli=TerraformCli("/srv/stack", terraform=FakeTerraform({})))
    version = target.lookup(" v3 ")
    assert (version.id, version.label, version.order) == ("v3", "release=v3", None)
    assert target.candidates() == []
