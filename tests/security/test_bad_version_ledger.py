"""The bad-version ledger (issue 9, section 2): a mark is cleared only by a successful
deploy that finished after it, or by an audited ``rollback unmark``; a version is marked
only once the switch away from it happened."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.sandbox import CLUSTER
from flows.rollback_flow import rollback_flow
from rollback import aws as aws_api
from rollback import decisions
from rollback.config import load_config
from rollback.models import AuditRecord, DeploymentRecord, RollbackRequest, Status, iso, utcnow
from rollback.runtime import Runtime
from tests.functional.test_cli import cli
from tests.functional.test_nginx_rollback import NGINX, Site, site  # noqa: F401 - fixture
from tests.functional.test_nginx_rollback import run as nginx_run
from tests.functional.world import make_world, service_task_definition

MARK = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def deploy(status: str = "success", kind: str = "deploy", **times: Any) -> DeploymentRecord:
    return DeploymentRecord(
        environment="staging",
        service="api",
        version="api:3",
        status=status,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        **times,
    )


def runtime(config: Path) -> Runtime:
    return Runtime(load_config(config))


# -- unit: which deploy clears a mark -------------------------------------------------------
class TestClearsMark:
    def test_only_a_successful_deploy_finished_after_the_mark(self):
        after = MARK + timedelta(minutes=1)
        assert decisions.clears_mark(deploy(finished_at=after), MARK)
        assert not decisions.clears_mark(deploy(finished_at=MARK - timedelta(days=1)), MARK)
        assert not decisions.clears_mark(deploy(finished_at=MARK), MARK)
        assert not decisions.clears_mark(deploy("failed", finished_at=after), MARK)
        assert not decisions.clears_mark(deploy(kind="rollback", finished_at=after), MARK)

    def test_without_a_finish_time_the_start_time_counts(self):
        assert decisions.clears_mark(deploy(started_at=MARK + timedelta(hours=1)), MARK)
        assert not decisions.clears_mark(deploy(started_at=MARK - timedelta(hours=1)), MARK)
        assert not decisions.clears_mark(deploy(), MARK)

    def test_a_mark_of_unknown_time_is_never_cleared_by_a_deploy(self):
        assert not decisions.clears_mark(deploy(finished_at=MARK), None)


# -- the store against the moto server -----------------------------------------------------
def test_marker_store_keeps_the_mark_time_and_clears_only_with_a_later_deploy(
    aws: str, tmp_path: Path
) -> None:
    config = make_world(tmp_path, history=False)
    markers = runtime(config).markers
    before = utcnow()
    markers.mark_bad("staging", "api", "api:3")
    marks = markers.bad_marks("staging", "api")
    assert set(marks) == {"api:3"} and marks["api:3"] is not None and marks["api:3"] >= before
    assert not markers.clear_bad("staging", "api", "api:3", deployed_at=before)
    assert markers.bad_versions("staging", "api") == frozenset({"api:3"})
    assert markers.clear_bad("staging", "api", "api:3", deployed_at=utcnow())
    assert markers.bad_versions("staging", "api") == frozenset()


def test_a_mark_without_a_time_is_kept_by_deploys(aws: str, tmp_path: Path) -> None:
    # GIVEN a mark written before marks carried a time (the old item shape)
    config = make_world(tmp_path, history=False)
    markers = runtime(config).markers
    aws_api.client("dynamodb").update_item(
        TableName=load_config(config).stores.audit_table,
        Key={"audit_id": {"S": "bad#staging#api"}},
        UpdateExpression="ADD versions :v SET record_type = :t",
        ExpressionAttributeValues={":v": {"SS": ["api:3"]}, ":t": {"S": "bad-versions"}},
    )
    # THEN a deploy never clears it; only an unmark does
    assert not markers.clear_bad("staging", "api", "api:3", deployed_at=utcnow())
    assert markers.bad_versions("staging", "api") == frozenset({"api:3"})
    assert markers.clear_bad("staging", "api", "api:3")
    assert markers.bad_versions("staging", "api") == frozenset()


# -- the CLI: import and record-deployment never clear with older timestamps ----------------
def old_success_line(version: str = "api:3") -> str:
    start = utcnow() - timedelta(days=3)
    return json.dumps(
        {
            "environment": "staging",
            "service": "api",
            "version": version,
            "status": "success",
            "kind": "deploy",
            "started_at": iso(start),
            "finished_at": iso(start + timedelta(minutes=4)),
        }
    )


@pytest.mark.usefixtures("prefect_server")
def test_history_import_of_an_old_success_keeps_the_mark(aws: str, tmp_path: Path) -> None:
    # GIVEN staging/api on api:4 (failed); api:3 is marked bad
    config = make_world(tmp_path)
    rt = runtime(config)
    rt.markers.mark_bad("staging", "api", "api:3")
    # WHEN an old successful deploy of api:3 is imported
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text(old_success_line() + "\n")
    out = cli("history", "import", "--config", str(config), str(jsonl))
    assert out.returncode == 0, out.stderr
    # THEN the mark stays
    assert rt.markers.bad_versions("staging", "api") == frozenset({"api:3"})
    # AND the next automatic rollback does not go to api:3
    result = rollback_flow(
        request=RollbackRequest(environment="staging", service="api", trigger="webhook"),
        config_path=str(config),
    )
    assert result["status"] == "succeeded", result
    assert result["to_version"] == "api:2"
    assert service_task_definition("api-staging") == "api:2"


def test_record_deployment_with_an_older_finish_keeps_the_mark(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    rt = runtime(config)
    rt.markers.mark_bad("staging", "api", "api:3")
    old = utcnow() - timedelta(days=2)
    base = ["record-deployment", "--config", str(config), "--env", "staging", "--service", "api"]
    out = cli(
        *base, "--version", "api:3", "--status", "success",
        "--started", iso(old - timedelta(minutes=5)) or "", "--finished", iso(old) or "",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert rt.markers.bad_versions("staging", "api") == frozenset({"api:3"})
    # A deploy that finishes now (after the mark) is a real redeploy: it clears the mark
    now = cli(*base, "--version", "api:3", "--status", "success")
    assert now.returncode == 0, now.stderr
    assert rt.markers.bad_versions("staging", "api") == frozenset()


# -- the CLI: unmark, audited ---------------------------------------------------------------
def test_unmark_clears_the_mark_and_writes_an_audit_record(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    rt = runtime(config)
    rt.markers.mark_bad("staging", "api", "api:3")
    base = ["unmark", "--config", str(config), "--env", "staging", "--service", "api"]
    out = cli(*base, "--version", "api:3", "--reason", "hotfix verified", "--by", "alice")
    assert out.returncode == 0, out.stderr
    assert rt.markers.bad_versions("staging", "api") == frozenset()
    audit_id = out.stdout.strip().split()[-1]
    shown = cli("audit", "--config", str(config), audit_id)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["action"] == "unmark" and record["version"] == "api:3"
    assert record["reason"] == "hotfix verified" and record["requested_by"] == "alice"
    assert record["environment"] == "staging" and record["service"] == "api"
    assert record["marked_at"]  # what the mark was, for the record
    # A version that is not marked: one line, exit 2, nothing written
    again = cli(*base, "--version", "api:3", "--reason", "again", "--by", "alice")
    assert again.returncode == 2 and "not marked bad" in again.stderr
    assert "Traceback" not in again.stderr
    # The reason and the person are required
    missing = cli(*base, "--version", "api:2")
    assert missing.returncode == 2


# -- the flow: mark only once the switch happened -------------------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.skipif(NGINX is None, reason="nginx cannot be found: run `make tools`")
def test_nginx_switch_failing_nginx_t_leaves_no_mark(site: Site) -> None:  # noqa: F811
    # GIVEN blue is live and healthy, "broken" fails `nginx -t`
    # WHEN a rollback to broken runs
    result = nginx_run(site, to="broken", reason="try broken")
    # THEN it failed, nothing changed, and the healthy blue is NOT marked bad
    assert result["status"] == "failed", result
    assert site.active() == "blue.conf" and site.get() == "blue"
    assert Runtime(load_config(site.config)).markers.bad_versions("prod", "web") == frozenset()


@pytest.mark.usefixtures("prefect_server")
def test_a_refused_run_leaves_no_mark_a_switch_does(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    rt = runtime(config)
    refused = rollback_flow(
        request=RollbackRequest(environment="staging", service="api", to="api:9"),
        config_path=str(config),
    )
    assert refused["status"] == "refused"
    assert rt.markers.bad_versions("staging", "api") == frozenset()
    done = rollback_flow(
        request=RollbackRequest(environment="staging", service="api"), config_path=str(config)
    )
    assert done["status"] == "succeeded"
    assert rt.markers.bad_versions("staging", "api") == frozenset({"api:4"})


@pytest.mark.usefixtures("prefect_server")
def test_resuming_an_interrupted_rollback_marks_the_from_version(aws: str, tmp_path: Path) -> None:
    # GIVEN an attempt that switched api:4 -> api:3 and died before it could mark api:4
    config = make_world(tmp_path)
    rt = runtime(config)
    dead = AuditRecord(
        audit_id="dead-attempt",
        environment="staging",
        service="api",
        status=Status.REQUESTED,
        requested_at=utcnow() - timedelta(minutes=2),
        requested_by="t",
    )
    rt.audit.create(dead)
    rt.audit.transition("dead-attempt", Status.EXECUTING, from_version="api:4", to_version="api:3")
    ecs = aws_api.client("ecs")
    arn = ecs.describe_task_definition(taskDefinition="api:3")["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs.update_service(cluster=CLUSTER, service="api-staging", taskDefinition=arn)
    assert rt.markers.bad_versions("staging", "api") == frozenset()
    # WHEN the next request resumes it
    result = rollback_flow(
        request=RollbackRequest(environment="staging", service="api"), config_path=str(config)
    )
    # THEN it stays on api:3 and api:4 is now marked bad
    assert result["status"] == "succeeded", result
    assert (result["from_version"], result["to_version"]) == ("api:4", "api:3")
    assert rt.audit.get("dead-attempt").status == Status.INTERRUPTED
    assert rt.markers.bad_versions("staging", "api") == frozenset({"api:4"})
