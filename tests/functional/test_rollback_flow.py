"""The rollback flow end to end: real Prefect flow runs against a real moto server
reached over HTTP through AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from devstack.sandbox import CLUSTER
from flows.rollback_flow import rollback_flow
from rollback import aws
from rollback.config import load_config
from rollback.models import RollbackRequest, Status
from rollback.runtime import Runtime
from tests.fakes.faulty_proxy import faulty_proxy
from tests.fakes.http_sink import http_sink
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.usefixtures("prefect_server")


def run(config: Path, **fields: Any) -> dict[str, Any]:
    fields.setdefault("environment", "staging")
    fields.setdefault("service", "api")
    fields.setdefault("requested_by", "tester")
    return rollback_flow(request=RollbackRequest(**fields), config_path=str(config))


def audit(config: Path, audit_id: str) -> Any:
    return Runtime(load_config(config)).audit.get(audit_id)


def test_rollback_to_last_good_version(aws: str, tmp_path: Path) -> None:
    # GIVEN staging/api runs api:4, whose deploy failed; api:3 was the last good deploy
    config = make_world(tmp_path)
    # WHEN a manual rollback runs
    result = run(config, reason="bad deploy")
    # THEN the service runs api:3, the audit trail is complete and the history has it
    assert result["status"] == "succeeded", result
    assert (result["from_version"], result["to_version"]) == ("api:4", "api:3")
    assert service_task_definition("api-staging") == "api:3"
    record = audit(config, result["audit_id"])
    assert [s for s, _ in record.transitions] == [
        "requested",
        "executing",
        "stabilizing",
        "succeeded",
    ]
    assert record.from_version == "api:4" and record.requested_by == "tester"
    rt = Runtime(load_config(config))
    newest = rt.history.query("staging", "api", limit=1)[0]
    assert (newest.kind, newest.version, newest.from_version) == ("rollback", "api:3", "api:4")
    assert "api:4" in rt.markers.bad_versions("staging", "api")
    assert result["headline"].startswith("Deploy of api:4 failed, rollback succeeded")


def test_second_rollback_skips_bad_version_and_goes_further(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    assert run(config)["to_version"] == "api:3"
    second = run(config)
    assert second["status"] == "succeeded"
    assert (second["from_version"], second["to_version"]) == ("api:3", "api:2")
    assert service_task_definition("api-staging") == "api:2"


def test_without_history_falls_back_to_newest_older_revision(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path, history=False)
    result = run(config)
    assert result["status"] == "succeeded"
    assert result["to_version"] == "api:3"
    assert "no usable history" in next(
        c["detail"] for c in result["checks"] if c["name"] == "target_resolved"
    )


def test_explicit_target_by_image_tag(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    result = run(config, to="v2")
    assert result["status"] == "succeeded" and result["to_version"] == "api:2"
    assert service_task_definition("api-staging") == "api:2"


def assert_refused(result: dict[str, Any], config: Path, check: str, service: str) -> None:
    assert result["status"] == "refused", result
    failed = {c["name"] for c in result["checks"] if not c["passed"]}
    assert check in failed, result["checks"]
    assert service_task_definition(service) == "api:4"  # untouched
    record = audit(config, result["audit_id"])
    assert record.status == Status.REFUSED
    assert [s for s, _ in record.transitions] == ["requested", "refused"]


@pytest.mark.parametrize(
    ("to", "check"),
    [("api:4", "not_on_target"), ("5", "target_resolved"), ("api:3", None)],
)
def test_refusals_for_explicit_targets(
    aws: str, tmp_path: Path, to: str, check: str | None
) -> None:
    config = make_world(tmp_path)
    if check is None:
        # A newer target: make api:3 "newer" by putting the service on api:2 first.
        aws_ecs = aws_client("ecs")
        aws_ecs.update_service(cluster=CLUSTER, service="api-staging", taskDefinition="api:2")
        result = run(config, to="api:3")
        assert result["status"] == "refused"
        assert not next(c for c in result["checks"] if c["name"] == "target_older")["passed"]
        assert service_task_definition("api-staging") == "api:2"
        return
    assert_refused(run(config, to=to), config, check, "api-staging")


def aws_client(name: str) -> Any:
    return aws.client(name)


def test_refused_when_image_missing_in_ecr(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    aws_client("ecr").batch_delete_image(repositoryName="api", imageIds=[{"imageTag": "v3"}])
    result = run(config, to="api:3")
    assert_refused(result, config, "images_exist", "api-staging")
    assert "api:v3" in next(c["detail"] for c in result["checks"] if c["name"] == "images_exist")


def test_refused_when_target_marked_bad(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    Runtime(load_config(config)).markers.mark_bad("staging", "api", "api:2")
    assert_refused(run(config, to="api:2"), config, "not_bad_version", "api-staging")


def test_refused_when_container_names_differ(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    aws_client("ecs").register_task_definition(
        family="api", containerDefinitions=[{"name": "other", "image": "x:1", "memory": 64}]
    )
    aws_client("ecs").update_service(cluster=CLUSTER, service="api-staging", taskDefinition="api:5")
    result = run(config, to="api:4")
    assert result["status"] == "refused"
    assert not next(c for c in result["checks"] if c["name"] == "same_containers")["passed"]
    assert service_task_definition("api-staging") == "api:5"


def test_protected_environment_needs_the_typed_confirmation(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    wrong = run(config, environment="prod", confirmation="yes please")
    assert_refused(wrong, config, "confirmation", "api")
    missing = run(config, environment="prod")
    assert_refused(missing, config, "confirmation", "api")
    right = run(config, environment="prod", confirmation="ROLLBACK-PROD")
    assert right["status"] == "succeeded"


def test_refused_while_another_rollback_holds_the_lock(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    Runtime(load_config(config)).locks.acquire("staging", "api", "someone-else", 60)
    result = run(config)
    assert_refused(result, config, "service_lock", "api-staging")
    assert "someone-else" in result["reason"]


def test_loop_and_cooldown_for_automatic_triggers(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    # An event caused by a rollback never starts another one.
    looped = run(config, trigger="webhook", source_event_id="rollback:abc123")
    assert_refused(looped, config, "loop_prevention", "api-staging")
    # The first automatic rollback runs; a second within the cooldown needs a human.
    first = run(config, trigger="alarm", source_event_id="alarm-1")
    assert first["status"] == "succeeded"
    second = run(config, trigger="alarm", source_event_id="alarm-2")
    assert second["status"] == "refused"
    policy = next(c for c in second["checks"] if c["name"] == "auto_policy")
    assert not policy["passed"] and "needs a human" in policy["detail"]
    assert service_task_definition("api-staging") == "api:3"


def test_auto_rollback_disabled_refuses_automatic_triggers(aws: str, tmp_path: Path) -> None:
    def no_auto(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["auto_rollback"] = False

    config = make_world(tmp_path, edit=no_auto)
    assert_refused(run(config, trigger="webhook"), config, "auto_policy", "api-staging")


def test_dry_run_plans_and_changes_nothing(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    result = run(config, dry_run=True)
    assert result["status"] == "planned"
    assert (result["from_version"], result["to_version"]) == ("api:4", "api:3")
    assert service_task_definition("api-staging") == "api:4"
    rt = Runtime(load_config(config))
    assert rt.markers.bad_versions("staging", "api") == frozenset()
    assert audit(config, result["audit_id"]).status == Status.PLANNED


def test_stabilization_timeout_fails_and_escalates(aws: str, tmp_path: Path, monkeypatch) -> None:
    # GIVEN a service that never reaches its desired count (moto runs 1 task, it wants 2)
    def stuck(data: dict[str, Any]) -> None:
        svc = data["environments"]["staging"]["services"]["api"]
        svc.update(service="api-stuck", stabilize_timeout_s=0.4)
        data["notifications"] = {"slack": {"webhook_env": "TEST_SLACK_URL"}}

    config = make_world(tmp_path, edit=stuck)
    create_stuck_service()
    with http_sink() as sink:
        monkeypatch.setenv("TEST_SLACK_URL", sink.url + "/services/T0/B0/not-a-real-secret")
        # WHEN it is rolled back
        result = run(config)
    # THEN the run fails on stabilization, the audit says so, and a human is paged
    assert result["status"] == "failed"
    assert "stabilization" in result["reason"] and "not stable" in result["reason"]
    assert audit(config, result["audit_id"]).status == Status.FAILED
    text = sink.requests[-1]["body"]["text"]
    assert "FAILED" in text and "human" in text
    assert service_task_definition("api-stuck") == "api:3"


def create_stuck_service() -> None:
    aws_client("ecs").create_service(
        cluster=CLUSTER, serviceName="api-stuck", taskDefinition="api:4", desiredCount=2
    )


def test_slack_message_routed_by_environment_without_secrets(
    aws: str, tmp_path: Path, monkeypatch
) -> None:
    def slack(data: dict[str, Any]) -> None:
        data["notifications"] = {"slack": {"webhook_env": "TEST_SLACK_URL"}}

    config = make_world(tmp_path, edit=slack)
    secret_path = "/services/T0SECRET/B0SECRET/xoxsecretpart123"
    with http_sink() as sink:
        monkeypatch.setenv("TEST_SLACK_URL", sink.url + secret_path)
        result = run(config, environment="prod", confirmation="ROLLBACK-PROD", reason="pager")
    assert result["status"] == "succeeded"
    assert len(sink.requests) == 1
    message = sink.requests[0]
    assert message["path"] == secret_path
    body = message["body"]
    assert body["channel"] == "#deployments-production"
    for expected in ("prod", "api", "api:4", "api:3", "pager", "tester", "succeeded"):
        assert expected in body["text"]
    assert "xoxsecretpart123" not in body["text"] and "SECRET" not in body["text"]


def test_transient_faults_are_retried_without_duplicate_effects(aws: str, tmp_path: Path) -> None:
    # GIVEN a proxy in front of moto failing every 5th request, and a burst of three
    # in a row that outlasts botocore's own retries (so the task retry must act)
    config = make_world(tmp_path)

    def fail(n: int) -> bool:
        return n % 5 == 0 or n in (21, 22, 23)

    with faulty_proxy(aws, fail) as (proxy_url, stats):
        os.environ["AWS_ENDPOINT_URL"] = proxy_url
        try:
            result = run(config)
        finally:
            os.environ["AWS_ENDPOINT_URL"] = aws
    # THEN the rollback completed once, despite the injected faults
    assert stats.injected >= 4
    assert result["status"] == "succeeded", result
    assert service_task_definition("api-staging") == "api:3"
    record = audit(config, result["audit_id"])
    assert [s for s, _ in record.transitions] == [
        "requested",
        "executing",
        "stabilizing",
        "succeeded",
    ]
    rollbacks = [
        r
        for r in Runtime(load_config(config)).history.query("staging", "api")
        if r.kind == "rollback"
    ]
    assert len(rollbacks) == 1


def test_an_error_before_any_change_ends_the_record_failed(aws: str, tmp_path: Path) -> None:
    # GIVEN a service whose ECS service does not exist (a wrong name in the config)
    def wrong(data: dict[str, Any]) -> None:
        data["environments"]["staging"]["services"]["api"]["service"] = "no-such-service"

    config = make_world(tmp_path, edit=wrong)
    result = run(config)
    # THEN the run fails with a clear reason, the record is final and the lock is free
    assert result["status"] == "failed"
    assert "no-such-service" in result["reason"] and "nothing was changed" in result["reason"]
    assert audit(config, result["audit_id"]).status == Status.FAILED
    assert Runtime(load_config(config)).locks.holder("staging", "api") is None


def test_a_rollback_is_few_task_runs_and_its_logs_read_like_the_runbook(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN staging/api runs api:4, whose deploy failed (each task run costs Prefect
    # bookkeeping in the client and the server: ~40 ms of CPU here)
    config = make_world(tmp_path)
    # WHEN a rollback runs
    result = run(config)
    assert result["status"] == "succeeded", result
    # THEN two task runs come before the change (the audit record, then one `prepare`),
    # and six in all
    runs = _task_runs(result["flow_run_id"])
    assert [name for name, _ in runs] == [
        "open-audit-record",
        "prepare",
        "execute-rollback",
        "stabilize-and-verify",
        "record-outcome",
        "notify",
    ]
    # AND the prepare run's log names each runbook step it took
    prepared = _logs(dict(runs)["prepare"], until="check")
    for step in ("lock:", "interrupted:", "bad versions:", "runs api:4", "target: api:3"):
        assert any(step in line for line in prepared), (step, prepared)
    assert any(line.startswith("check target_resolved") for line in prepared), prepared
    settled = _logs(dict(runs)["stabilize-and-verify"], until="verify")
    for step in ("marked api:4 bad", "-> stabilizing", "stable:", "verify "):
        assert any(step in line for line in settled), (step, settled)


def _task_runs(flow_run_id: str) -> list[tuple[str, Any]]:
    """(task name, task run id) of a flow run's task runs, in the order they started."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    runs.sort(key=lambda r: r.start_time or r.expected_start_time)
    return [(r.name.rsplit("-", 1)[0], r.id) for r in runs]


def _logs(task_run_id: Any, until: str, timeout: float = 20) -> list[str]:
    """The task run's log messages, once one containing ``until`` has arrived (logs reach
    the API in batches)."""
    import time

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id]))
            )
        lines = [log.message for log in logs]
        if any(until in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)
