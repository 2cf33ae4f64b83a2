"""Target identity (issue 9, section 1): a rollback only goes to a version *this service*
ran, only backwards, and says why when it cannot tell.

The CLI tests run the real ``rollback`` command against the moto server (ECS) or the
real terraform binary; the unit tests call the pure decisions directly."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.sandbox import ACCOUNT, REGION, image, seed
from flows.rollback_flow import rollback_flow
from rollback import aws as aws_api
from rollback import decisions
from rollback.config import load_config
from rollback.models import DeploymentRecord, RollbackRequest, Status, Version, utcnow
from rollback.runtime import Runtime
from rollback.targets.base import build_target, parse_service_config
from rollback.targets.ecs import same_family
from tests.functional.test_cli import cli
from tests.functional.world import make_world, service_task_definition

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TERRAFORM = shutil.which("terraform") or str(Path(sys.executable).with_name("terraform"))
APP_TF = """\
variable "image_tag" { type = string }
resource "terraform_data" "app" { input = var.image_tag }
output "image_tag" { value = var.image_tag }
"""


def rec(version: str, hours_ago: float, status: str = "success", **kw: Any) -> DeploymentRecord:
    return DeploymentRecord(
        environment="prod",
        service="infra",
        version=version,
        status=status,  # type: ignore[arg-type]
        started_at=NOW - timedelta(hours=hours_ago),
        **kw,
    )


def last_json(out: Any) -> dict[str, Any]:
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def failed_checks(result: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in result["checks"] if not c["passed"]}


def assert_refused_untouched(config: Path, result: dict[str, Any]) -> None:
    assert result["status"] == "refused", result
    record = Runtime(load_config(config)).audit.get(result["audit_id"])
    assert record is not None and record.status == Status.REFUSED
    assert [s for s, _ in record.transitions] == ["requested", "refused"]
    assert Runtime(load_config(config)).markers.bad_versions("staging", "api") == frozenset()


# -- unit: the pure decisions ---------------------------------------------------------------
class TestSameFamily:
    def test_same_family_passes_other_family_fails(self):
        assert same_family(Version("api:4", order=4), Version("api:3", order=3)).passed
        other = same_family(Version("api:4", order=4), Version("evilfam:1", order=1))
        assert not other.passed and "evilfam" in other.detail and other.name == "same_family"


class TestKnownVersion:
    HISTORY = [rec("v1", 50), rec("v2", 40, image_tag="2.0.0"), rec("v3", 30, "failed")]

    def test_a_successful_deploy_in_the_history_is_known(self):
        check = decisions.check_known_version(Version("v1"), "v1", self.HISTORY)
        assert check.passed and check.name == "known_version"

    def test_the_image_tag_of_a_successful_deploy_is_known(self):
        assert decisions.check_known_version(Version("2.0.0"), "2.0.0", self.HISTORY).passed

    def test_a_failed_deploy_or_a_typo_is_not_known(self):
        assert not decisions.check_known_version(Version("v3"), "v3", self.HISTORY).passed
        typo = decisions.check_known_version(Version("v-typo"), "v-typo", self.HISTORY)
        assert not typo.passed and "never deployed" in typo.detail

    def test_a_rollback_record_does_not_make_a_version_known(self):
        history = [rec("evil", 1, kind="rollback")]
        assert not decisions.check_known_version(Version("evil"), "evil", history).passed

    def test_pattern_alone_or_with_the_image_in_ecr(self):
        v9 = Version("v9")
        assert decisions.check_known_version(v9, "v9", [], pattern=r"v\d+").passed
        assert not decisions.check_known_version(v9, "v9", [], pattern=r"x\d+").passed
        in_ecr = decisions.check_known_version(v9, "v9", [], pattern=r"v\d+", image_found=True)
        assert in_ecr.passed and "ECR" in in_ecr.detail
        missing = decisions.check_known_version(v9, "v9", [], pattern=r"v\d+", image_found=False)
        assert not missing.passed and "ECR" in missing.detail

    def test_pattern_must_match_the_whole_version(self):
        check = decisions.check_known_version(Version("v9;rm"), "v9;rm", [], pattern=r"v\d+")
        assert not check.passed


class TestTargetOlder:
    HISTORY = [rec("v1", 50), rec("v2", 40), rec("v3", 30, "failed")]

    def test_platform_order_first(self):
        assert decisions.check_target_older(Version("a:4", order=4), Version("a:3", order=3)).passed
        newer = decisions.check_target_older(Version("a:3", order=3), Version("a:4", order=4))
        assert not newer.passed and "only goes back" in newer.detail

    def test_history_deploy_times_when_the_platform_has_no_order(self):
        older = decisions.check_target_older(Version("v3"), Version("v2"), self.HISTORY)
        assert older.passed and "history" in older.detail
        newer = decisions.check_target_older(Version("v2"), Version("v3"), self.HISTORY)
        assert not newer.passed

    def test_unknown_order_fails_for_a_human_and_can_be_forced(self):
        unknown = decisions.check_target_older(Version("v3"), Version("v9"), self.HISTORY)
        assert not unknown.passed and "--force-order" in unknown.detail
        forced = decisions.check_target_older(
            Version("v3"), Version("v9"), self.HISTORY, force_order=True, requested_by="alice"
        )
        assert forced.passed and "forced" in forced.detail and "alice" in forced.detail

    def test_unknown_order_is_refused_for_automatic_triggers_even_when_forced(self):
        check = decisions.check_target_older(
            Version("v3"), Version("v9"), self.HISTORY, force_order=True, automatic=True
        )
        assert not check.passed and "automatic" in check.detail

    def test_force_never_overrides_a_known_newer_target(self):
        check = decisions.check_target_older(
            Version("v2"), Version("v3"), self.HISTORY, force_order=True
        )
        assert not check.passed

    def test_order_by_the_version_that_went_live_last(self):
        # blue and green are reused colors: the latest deploy of each decides
        history = [rec("blue", 50), rec("green", 40), rec("blue", 5, "failed")]
        assert decisions.version_order(Version("green"), Version("blue"), history)[0] is True


class TestMigrationGateChooses:
    def test_safe_target_is_named(self):
        history = [
            rec("v1", 50, schema_version=1, min_schema_version=1, max_schema_version=4),
            rec("v2", 40, schema_version=2, min_schema_version=2, max_schema_version=2),
            rec("v3", 30, "failed", schema_version=4, min_schema_version=3, max_schema_version=4),
        ]
        assert decisions.schema_safe_target(history, "v2", "v3", frozenset()) == "v1"
        assert decisions.schema_safe_target(history, "v2", "v3", frozenset({"v1"})) is None
        assert decisions.schema_safe_target(history, "v1", "v3", frozenset()) is None


# -- ECS: another family is never a target --------------------------------------------------
def register_evil_family() -> str:
    """A task family the service never ran: another image, an admin task role."""
    out = aws_api.client("ecs").register_task_definition(
        family="evilfam",
        taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin-everything",
        containerDefinitions=[
            {"name": "app", "image": image("evil", "pwn"), "memory": 256},
            {"name": "sidecar", "image": "public.ecr.aws/nginx/nginx:1.27", "memory": 64},
        ],
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


@pytest.mark.parametrize(
    "spec",
    [
        "evilfam:1",
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/evilfam:1",
        "pwn",  # the other family's image tag
        "role/admin-everything",
    ],
)
def test_cli_refuses_a_revision_of_another_family(
    aws: str, tmp_path: Path, prefect_api_url: str, spec: str
) -> None:
    # GIVEN staging/api runs api:4, and a task family "evilfam" exists in the account
    config = make_world(tmp_path)
    register_evil_family()
    # WHEN a human asks to roll back "to" a revision of that other family
    out = cli(
        "run", "--config", str(config), "--env", "staging", "--service", "api",
        "--to", spec, "--json", api_url=prefect_api_url,
    )  # fmt: skip
    # THEN refused (exit 3), nothing touched, and the audit says refused
    assert out.returncode == 3, out.stderr
    result = last_json(out)
    failed = failed_checks(result)
    assert "target_resolved" in failed and "family" in failed["target_resolved"], failed
    assert service_task_definition("api-staging") == "api:4"
    assert_refused_untouched(config, result)


@pytest.mark.usefixtures("prefect_server")
def test_history_naming_another_family_is_skipped_by_automatic_rollbacks(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN the history claims evilfam:1 was the newest successful deploy of staging/api
    config = make_world(tmp_path)
    register_evil_family()
    Runtime(load_config(config)).history.append(
        DeploymentRecord(
            "staging", "api", "evilfam:1", "success", started_at=utcnow() - timedelta(minutes=5)
        )
    )
    # WHEN an automatic rollback runs
    result = rollback_flow(
        request=RollbackRequest(environment="staging", service="api", trigger="webhook"),
        config_path=str(config),
    )
    # THEN it goes to the family's own last good revision, never to evilfam
    assert result["status"] == "succeeded", result
    assert result["to_version"] == "api:3"
    assert service_task_definition("api-staging") == "api:3"
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["same_family"]["passed"]


# -- Terraform: a version nobody deployed is refused ----------------------------------------
@pytest.fixture
def tf_world(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    rc = tmp_path / "terraformrc"
    rc.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(rc))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    workdir = tmp_path / "stack"
    workdir.mkdir()
    (workdir / "main.tf").write_text(APP_TF)

    def make(**extra: Any) -> tuple[Path, dict[str, Any]]:
        service = {
            "type": "terraform",
            "working_dir": str(workdir),
            "terraform_bin": TERRAFORM,
            **extra,
        }
        tf = build_target(parse_service_config(service))
        for tag in ("v1", "v2", "v3"):
            tf.execute(tf.lookup(tag))
        path = tmp_path / "rollback.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "stores": {"create_tables": True},
                    "environments": {"prod": {"services": {"infra": service}}},
                }
            )
        )
        rt = Runtime(load_config(path))
        rt.ensure_tables()
        start = utcnow() - timedelta(hours=3)
        for n, (tag, status) in enumerate((("v1", "success"), ("v2", "success"), ("v3", "failed"))):
            rt.history.append(
                DeploymentRecord(
                    "prod", "infra", tag, status,  # type: ignore[arg-type]
                    image_tag=tag, started_at=start + timedelta(hours=n),
                )
            )  # fmt: skip
        return path, service

    return make


def tf_current(service: dict[str, Any]) -> str:
    return build_target(parse_service_config(service)).current().id


def tf_run(config: Path, api_url: str, *extra: str) -> Any:
    return cli(
        "run", "--config", str(config), "--env", "prod", "--service", "infra", "--json", *extra,
        api_url=api_url,
    )  # fmt: skip


def test_cli_refuses_a_terraform_version_never_deployed(
    tf_world: Any, prefect_api_url: str
) -> None:
    # GIVEN a stack on v3; the history knows v1, v2 (success) and v3 (failed)
    config, service = tf_world()
    for extra in (["--dry-run"], []):
        # WHEN a human mistypes the target
        out = tf_run(config, prefect_api_url, "--to", "v-typo", *extra)
        # THEN refused (exit 3) with known_version failed, and the stack still runs v3
        assert out.returncode == 3, out.stderr
        result = last_json(out)
        assert result["status"] == "refused"
        assert "known_version" in failed_checks(result), result["checks"]
        assert tf_current(service) == "v3"
        record = Runtime(load_config(config)).audit.get(result["audit_id"])
        assert record is not None and record.status == Status.REFUSED
    # A version the history knows still rolls back
    ok = tf_run(config, prefect_api_url, "--to", "v1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert tf_current(service) == "v1"


def test_cli_version_pattern_needs_a_known_order_or_force_order(
    tf_world: Any, prefect_api_url: str
) -> None:
    # GIVEN version_pattern admits v0 (never deployed, so no order can be established)
    config, service = tf_world(version_pattern=r"v\d+")
    # WHEN a human asks for v0 without --force-order THEN refused on target_older
    out = tf_run(config, prefect_api_url, "--to", "v0")
    assert out.returncode == 3, out.stderr
    failed = failed_checks(last_json(out))
    assert list(failed) == ["target_older"] and "--force-order" in failed["target_older"]
    assert tf_current(service) == "v3"
    # WHEN the human overrides the order THEN it runs, and the check records the override
    forced = tf_run(config, prefect_api_url, "--to", "v0", "--force-order", "--by", "alice")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    result = last_json(forced)
    older = next(c for c in result["checks"] if c["name"] == "target_older")
    assert older["passed"] and "forced" in older["detail"] and "alice" in older["detail"]
    assert tf_current(service) == "v0"
    record = Runtime(load_config(config)).audit.get(result["audit_id"])
    assert any(c.name == "target_older" and "forced" in c.detail for c in record.checks)


@pytest.mark.usefixtures("prefect_server")
def test_pattern_with_ecr_repository_needs_the_image(tf_world: Any) -> None:
    # GIVEN images v1..v4 in ECR repository api, and a pattern that admits any v<N>
    seed()
    config, service = tf_world(version_pattern=r"v\d+", ecr_repository="api")
    request = RollbackRequest(
        environment="prod", service="infra", to="v7", force_order=True, requested_by="t"
    )
    # WHEN the target matches the pattern but has no image THEN refused
    result = rollback_flow(request=request, config_path=str(config))
    assert result["status"] == "refused", result
    assert "ECR" in failed_checks(result)["known_version"]
    assert tf_current(service) == "v3"
    # WHEN the image exists (v4 was pushed but never deployed) THEN the pattern admits it
    ok = rollback_flow(request=request.model_copy(update={"to": "v4"}), config_path=str(config))
    known = next(c for c in ok["checks"] if c["name"] == "known_version")
    assert known["passed"] and "ECR" in known["detail"]
