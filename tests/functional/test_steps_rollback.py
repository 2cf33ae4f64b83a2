"""Multi-step rollbacks as one saga: terraform + ECS through the real flow, against the
real terraform binary and the moto server."""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.sandbox import CLUSTER
from flows.rollback_flow import rollback_flow
from rollback import progress
from rollback.config import load_config
from rollback.models import DeploymentRecord, RollbackRequest, Status, utcnow
from rollback.runtime import Runtime
from rollback.targets.base import build_target, parse_service_config
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.usefixtures("prefect_server")
TERRAFORM = shutil.which("terraform") or str(Path(sys.executable).with_name("terraform"))

STACK = """\
variable "image_tag" { type = string }
resource "terraform_data" "app" { input = var.image_tag }
output "image_tag" { value = var.image_tag }
"""
# Applying v3 fails (its provisioner exits 1); every tag change replaces "gate".
FAILS_ON_V3 = (
    STACK
    + """\
resource "terraform_data" "gate" {
  triggers_replace = var.image_tag
  provisioner "local-exec" { command = var.image_tag == "v3" ? "exit 1" : "true" }
}
"""
)


@pytest.fixture(autouse=True)
def offline_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc = tmp_path / "terraformrc"
    rc.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(rc))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")


def terraform_step(tmp_path: Path, source: str) -> dict[str, Any]:
    workdir = tmp_path / "stack"
    workdir.mkdir()
    (workdir / "main.tf").write_text(source)
    step = {"type": "terraform", "working_dir": str(workdir), "terraform_bin": TERRAFORM}
    tf = build_target(parse_service_config(step))
    tf.execute(tf.lookup("v4"))  # the stack was last deployed with v4
    return step


def ecs_step() -> dict[str, Any]:
    return {"type": "ecs", "cluster": CLUSTER, "service": "api-staging", "poll_interval_s": 0.05}


def world(tmp_path: Path, steps: list[dict[str, Any]]) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["services"]["api"] = {"type": "steps", "steps": steps}

    config = make_world(tmp_path, history=False, edit=edit)
    # Releases v1..v4 as CI records them: the composite id of the whole, and the tag.
    # A terraform step cannot prove a version is the service's own: the history does.
    rt = Runtime(load_config(config))
    start = utcnow() - timedelta(hours=4)
    for n in range(1, 5):
        parts = [
            f"{i}-{s['type']}={'v' if s['type'] == 'terraform' else 'api:'}{n}"
            for i, s in enumerate(steps, 1)
        ]
        rt.history.append(
            DeploymentRecord(
                "staging",
                "api",
                "|".join(parts),
                "success" if n < 4 else "failed",
                image_tag=f"v{n}",
                started_at=start + timedelta(hours=n - 1),
            )
        )
    return config


def tf_output(step: dict[str, Any]) -> str:
    return build_target(parse_service_config(step)).current().id


def run(config: Path, **kw: Any) -> dict[str, Any]:
    request = RollbackRequest(environment="staging", service="api", requested_by="t", **kw)
    return rollback_flow(request=request, config_path=str(config))


def test_all_steps_roll_back_in_order(aws: str, tmp_path: Path) -> None:
    tf = terraform_step(tmp_path, STACK)
    config = world(tmp_path, [tf, ecs_step()])
    lines: list[str] = []
    unsubscribe = progress.subscribe(lines.append)
    try:
        result = run(config, to="v3")
    finally:
        unsubscribe()
    assert result["status"] == "succeeded", result
    # While the saga waits for a step, it says which step and what it waits for.
    assert any(line.startswith("step 2-ecs → api:3: poll 1:") for line in lines), lines
    assert result["to_version"] == "1-terraform=v3|2-ecs=api:3"
    assert tf_output(tf) == "v3"
    assert service_task_definition("api-staging") == "api:3"


def test_a_failing_later_step_puts_the_earlier_ones_back(aws: str, tmp_path: Path) -> None:
    # GIVEN ECS first, then a terraform stack whose apply of v3 fails
    tf = terraform_step(tmp_path, FAILS_ON_V3)
    config = world(tmp_path, [ecs_step(), tf])
    # WHEN the whole is rolled back to v3
    result = run(config, to="v3", allow_destroy=True)
    # THEN ECS was switched, terraform failed, both were put back: the outcome says so
    assert result["status"] == "failed", result
    reason = result["reason"]
    assert "step 2-terraform failed" in reason
    assert "steps that ran: 1-ecs" in reason and "undone: 2-terraform, 1-ecs" in reason
    assert service_task_definition("api-staging") == "api:4"
    assert tf_output(tf) == "v4"
    record = Runtime(load_config(config)).audit.get(result["audit_id"])
    assert record.status == Status.FAILED and record.from_version == "1-ecs=api:4|2-terraform=v4"


def test_steps_cannot_nest_and_step_errors_are_named() -> None:
    with pytest.raises(ValueError, match="step 2: steps cannot nest"):
        parse_service_config({"type": "steps", "steps": [ecs_step(), {"type": "steps"}]})
    with pytest.raises(ValueError, match="step 1: .*cluster: Field required"):
        parse_service_config({"type": "steps", "steps": [{"type": "ecs", "service": "x"}]})
