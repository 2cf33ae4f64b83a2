"""Terraform end to end: the real terraform binary on configurations of the built-in
``terraform_data`` resource (no provider download, local state in tmp_path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.rollback_flow import rollback_flow
from rollback.config import load_config
from rollback.errors import NotFoundError, TargetError
from rollback.models import DeploymentRecord, RollbackRequest, utcnow
from rollback.runtime import Runtime
from rollback.targets.base import DESTROY_CHECK, build_target, parse_service_config
from rollback.targets.terraform import TerraformTarget

TERRAFORM = shutil.which("terraform") or str(Path(sys.executable).with_name("terraform"))

APP_TF = """\
variable "image_tag" { type = string }
resource "terraform_data" "app" { input = var.image_tag }
output "image_tag" { value = var.image_tag }
"""
# A release whose tag forces a replacement: rolling back destroys and recreates "pin".
PINNED_TF = APP_TF + 'resource "terraform_data" "pin" { triggers_replace = var.image_tag }\n'


@pytest.fixture(autouse=True)
def offline_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli_config = tmp_path / "terraformrc"
    cli_config.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(cli_config))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")


def stack(tmp_path: Path, source: str = APP_TF, **extra: Any) -> dict[str, Any]:
    """A working directory holding ``source``; returns its service config."""
    workdir = tmp_path / "stack"
    workdir.mkdir(exist_ok=True)
    (workdir / "main.tf").write_text(source)
    return {"type": "terraform", "working_dir": str(workdir), "terraform_bin": TERRAFORM, **extra}


def target(service: dict[str, Any]) -> TerraformTarget:
    built = build_target(parse_service_config(service))
    assert isinstance(built, TerraformTarget)
    return built


def deploy(service: dict[str, Any], *tags: str) -> None:
    tf = target(service)
    for tag in tags:
        tf.execute(tf.lookup(tag))


@pytest.fixture
def flow_config(aws: str, tmp_path: Path) -> Iterator[Any]:
    """Writes the rollback config for one terraform service; returns a runner."""

    def make(service: dict[str, Any], history: list[tuple[str, str]]) -> Path:
        path = tmp_path / "rollback.yaml"
        data = {
            "stores": {"create_tables": True},
            "environments": {"prod": {"services": {"infra": service}}},
        }
        path.write_text(yaml.safe_dump(data))
        rt = Runtime(load_config(path))
        rt.ensure_tables()
        start = utcnow() - timedelta(hours=len(history))
        for n, (tag, status) in enumerate(history):
            rt.history.append(
                DeploymentRecord(
                    "prod",
                    "infra",
                    tag,
                    status,  # type: ignore[arg-type]
                    image_tag=tag,
                    started_at=start + timedelta(hours=n),
                )
            )
        return path

    yield make


def run(config: Path, **fields: Any) -> dict[str, Any]:
    request = RollbackRequest(environment="prod", service="infra", requested_by="tester", **fields)
    return rollback_flow(request=request, config_path=str(config))


# -- through the rollback flow -------------------------------------------------------------
@pytest.mark.usefixtures("prefect_server")
def test_rollback_re_applies_the_last_good_tag(tmp_path: Path, flow_config: Any) -> None:
    # GIVEN v1 and v2 deployed fine, then v3 was applied and its deploy failed
    service = stack(tmp_path)
    deploy(service, "v1", "v2", "v3")
    config = flow_config(service, [("v1", "success"), ("v2", "success"), ("v3", "failed")])
    # WHEN a rollback runs without --to
    result = run(config, reason="v3 is broken")
    # THEN the stack is re-applied with v2, the plan summary was recorded, no drift remains
    assert result["status"] == "succeeded", result
    assert (result["from_version"], result["to_version"]) == ("v3", "v2")
    checks = {c["name"]: c for c in result["checks"]}
    assert "1 to change" in checks["terraform_plan"]["detail"]
    assert "update terraform_data.app" in checks["terraform_plan"]["detail"]
    assert checks[DESTROY_CHECK]["passed"]
    assert checks["terraform_no_drift"]["passed"] and checks["terraform_applied_version"]["passed"]
    assert target(service).current().id == "v2"


@pytest.mark.usefixtures("prefect_server")
def test_plan_that_destroys_is_refused_unless_allowed(tmp_path: Path, flow_config: Any) -> None:
    # GIVEN a stack where changing the tag replaces a resource, on v2 after v1
    service = stack(tmp_path, PINNED_TF)
    deploy(service, "v1", "v2")
    config = flow_config(service, [("v1", "success"), ("v2", "success")])
    # WHEN a rollback to v1 is requested without allow_destroy
    refused = run(config, to="v1", reason="back to v1")
    # THEN it is refused, naming the resource, and the stack still runs v2
    assert refused["status"] == "refused", refused
    failed = {c["name"]: c["detail"] for c in refused["checks"] if not c["passed"]}
    assert list(failed) == [DESTROY_CHECK]
    assert "terraform_data.pin" in failed[DESTROY_CHECK]
    assert target(service).current().id == "v2"
    # WHEN the request allows the destroy
    allowed = run(config, to="v1", reason="back to v1", allow_destroy=True)
    # THEN the rollback goes through
    assert allowed["status"] == "succeeded", allowed
    assert target(service).current().id == "v1"


# -- the target on its own ----------------------------------------------------------------
def test_verify_names_the_drifting_addresses(tmp_path: Path) -> None:
    # GIVEN the stack was applied with v1
    service = stack(tmp_path)
    deploy(service, "v1")
    tf = target(service)
    assert [c.passed for c in tf.verify(tf.lookup("v1"))] == [True, True]
    # WHEN the configuration changes outside the rollback (a resource added)
    main = Path(service["working_dir"], "main.tf")
    main.write_text(main.read_text() + 'resource "terraform_data" "extra" { input = "x" }\n')
    # THEN verification fails and names the address that drifts
    drift = {c.name: c for c in tf.verify(tf.lookup("v1"))}["terraform_no_drift"]
    assert not drift.passed
    assert "create terraform_data.extra" in drift.detail


def test_workspace_backend_config_and_var_files(tmp_path: Path) -> None:
    # GIVEN a local backend whose path comes from backend_config, and a var file that
    # sets the version variable too; the default workspace was applied with v0
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    varfile = tmp_path / "common.tfvars"
    varfile.write_text('image_tag = "from-var-file"\n')
    source = 'terraform {\n  backend "local" {}\n}\n' + APP_TF
    service = stack(tmp_path, source, backend_config={"path": str(state)}, var_files=[str(varfile)])
    deploy(service, "v0")
    assert state.exists()
    workdir = service["working_dir"]
    # Workspaces exist before rollbacks use them.
    subprocess.run(
        [TERRAFORM, "workspace", "new", "blue"], cwd=workdir, check=True, capture_output=True
    )
    # WHEN v1 is applied through a target configured for workspace blue
    blue = {**service, "workspace": "blue"}
    deploy(blue, "v1")
    # THEN our value wins over the var file, in blue only; default still runs v0
    assert target(blue).current().id == "v1"
    assert Path(workdir, "terraform.tfstate.d", "blue", "terraform.tfstate").exists()
    subprocess.run(
        [TERRAFORM, "workspace", "select", "default"], cwd=workdir, check=True, capture_output=True
    )
    assert target(service).current().id == "v0"


def test_current_without_the_output_says_what_to_declare(tmp_path: Path) -> None:
    # GIVEN a stack whose configuration has no output for the version
    service = stack(tmp_path, APP_TF.replace('output "image_tag"', 'output "other"'))
    deploy(service, "v1")
    # WHEN the current version is read THEN the error says what the config must expose
    with pytest.raises(NotFoundError, match='output "image_tag"'):
        target(service).current()


def test_execute_applies_exactly_the_checked_plan(tmp_path: Path) -> None:
    # GIVEN a stack on v2 and a rollback to v1 whose plan the checks approved
    service = stack(tmp_path)
    deploy(service, "v1", "v2")
    tf = target(service)
    assert all(c.passed for c in tf.check(tf.current(), tf.lookup("v1")))
    # WHEN the code changes after the checks (a new resource), then the rollback executes
    main = Path(service["working_dir"], "main.tf")
    main.write_text(main.read_text() + 'resource "terraform_data" "late" { input = "x" }\n')
    tf.execute(tf.lookup("v1"))
    # THEN what ran is the checked plan: v1 applied, the unchecked resource not created
    assert tf.current().id == "v1"
    drift = {c.name: c for c in tf.verify(tf.lookup("v1"))}["terraform_no_drift"]
    assert not drift.passed and "terraform_data.late" in drift.detail


def test_a_plan_gone_stale_is_refused_by_terraform(tmp_path: Path) -> None:
    # GIVEN a checked plan for v1 while the stack is on v2
    service = stack(tmp_path)
    deploy(service, "v1", "v2")
    tf = target(service)
    tf.check(tf.current(), tf.lookup("v1"))
    # WHEN someone applies v3 before the rollback executes
    deploy(service, "v3")
    # THEN applying the old plan fails and the stack stays where the other apply left it
    with pytest.raises(TargetError, match="(?i)stale"):
        tf.execute(tf.lookup("v1"))
    assert target(service).current().id == "v3"
