"""Automatic means an automatic entrance; the outcome names what really happened; a run
that loses AWS after the switch still ends in a recorded, notified state.

(The deployment-run half — a Custom Run whose form says ``webhook`` still pauses for the
typed confirmation — runs through a real worker in tests/functional/test_ui_manual_run.py.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flows.rollback_flow import rollback_flow
from rollback import decisions
from rollback.config import load_config
from rollback.entrance import admit, claim_key
from rollback.models import RollbackRequest, Status
from rollback.runtime import Runtime
from tests.fakes.faulty_proxy import FaultStats, faulty_proxy
from tests.fakes.http_sink import http_sink
from tests.functional.world import make_world, service_task_definition


def request(**fields: Any) -> RollbackRequest:
    fields.setdefault("environment", "prod")
    fields.setdefault("service", "api")
    return RollbackRequest(**fields)


# -- who may be automatic (pure) ------------------------------------------------------------
def test_a_deployment_run_without_a_claim_is_manual_whatever_its_trigger() -> None:
    # GIVEN a deployment run whose parameters say "webhook" and name an event
    req = request(trigger="webhook", source_event_id="github:x", authenticated_by="github-hmac")
    # WHEN no entrance claimed that event for this audit id
    got = admit(req, audit_id="a1", deployment="rollback-manual", claim=None, local_user="u")
    # THEN it is manual, and the credential is the deployment, not what the form said
    assert got.trigger == "manual"
    assert got.authenticated_by == "prefect-deployment:rollback-manual"
    assert got.note and "not granted" in got.note


def test_a_claim_for_another_audit_id_grants_nothing() -> None:
    req = request(trigger="alarm", source_event_id="cloudwatch:e1")
    got = admit(
        req,
        audit_id="mine",
        deployment="rollback-auto",
        claim=("other", "alarm-token"),
        local_user="u",
    )
    assert got.trigger == "manual"


def test_the_entrance_claim_grants_the_trigger_and_names_the_credential() -> None:
    req = request(trigger="alarm", source_event_id="cloudwatch:e1", authenticated_by="forged")
    got = admit(
        req,
        audit_id="a1",
        deployment="rollback-auto",
        claim=("a1", "alarm-token"),
        local_user="u",
    )
    assert (got.trigger, got.authenticated_by, got.note) == ("alarm", "alarm-token", None)


def test_in_process_runs_keep_their_trigger_and_default_to_the_os_user() -> None:
    got = admit(request(), audit_id="a1", deployment=None, claim=None, local_user="alice")
    assert (got.trigger, got.authenticated_by) == ("manual", "cli:alice")
    assert claim_key(request(), "a1") == "intake:a1"
    assert claim_key(request(source_event_id="github:1"), "a1") == "github:1"


# -- honest outcome (pure) -------------------------------------------------------------------
def test_headline_calls_a_deploy_failed_only_when_it_did() -> None:
    args = ("succeeded", "prod", "api", "api:4", "api:3")
    assert decisions.headline(*args, True).startswith("Deploy of api:4 failed, rollback succeeded")
    alarm = decisions.headline(*args, False, "Alarm 'api-5xx' fired")
    assert alarm.startswith("Alarm 'api-5xx' fired, rollback succeeded: prod/api")
    assert "Deploy" not in alarm
    failed = decisions.headline(
        "failed", "prod", "api", "api:4", "api:3", False, "Health check failed"
    )
    assert failed.startswith("Health check failed and the rollback FAILED")


# -- through the real flow and the moto server -----------------------------------------------
pytestmark = pytest.mark.usefixtures("prefect_server")


def test_the_audit_names_the_credential_of_an_in_process_run(aws: str, tmp_path: Path) -> None:
    config = make_world(tmp_path)
    result = rollback_flow(
        request=request(environment="staging", requested_by="t", authenticated_by="api-token"),
        config_path=str(config),
    )
    record = Runtime(load_config(config)).audit.get(result["audit_id"])
    assert record is not None and record.authenticated_by == "api-token"


def test_an_alarm_rollback_says_which_alarm_fired_not_that_a_deploy_failed(
    aws: str, tmp_path: Path
) -> None:
    # GIVEN no history saying api:4's deploy failed
    config = make_world(tmp_path, history=False)
    # WHEN an alarm rolls staging/api back
    result = rollback_flow(
        request=request(
            environment="staging",
            trigger="alarm",
            requested_by="cloudwatch:api-5xx",
            source_event_id="cloudwatch:e1",
        ),
        config_path=str(config),
    )
    # THEN the headline names the alarm and does not invent a failed deploy
    assert result["status"] == "succeeded", result
    assert result["headline"].startswith("Alarm 'api-5xx' fired, rollback succeeded")


def test_aws_cut_off_after_the_switch_ends_recorded_and_notified(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Slack receiver and an AWS path that breaks right after UpdateService
    def slack(data: dict[str, Any]) -> None:
        data["notifications"] = {"slack": {"webhook_env": "TEST_SLACK_URL"}}

    config = make_world(tmp_path, edit=slack)
    holder: list[FaultStats] = []

    def cut(_: int) -> bool:
        return bool(holder) and any("UpdateService" in t for t in holder[0].forwarded)

    with http_sink() as sink, faulty_proxy(aws, cut) as (proxy_url, stats):
        holder.append(stats)
        monkeypatch.setenv("TEST_SLACK_URL", sink.url + "/services/T0/B0/x")
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy_url)
        # WHEN a rollback runs
        result = rollback_flow(
            request=request(environment="staging", requested_by="t"), config_path=str(config)
        )
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws)
    # THEN the run ends failed (not stuck), says the next request resumes it, and Slack heard
    assert result["status"] == "failed", result
    assert "next request" in result["reason"]
    assert sink.requests, "a notification was attempted"
    assert service_task_definition("api-staging") == "api:3"
    rt = Runtime(load_config(config))
    stuck = rt.audit.get(result["audit_id"])
    assert stuck is not None and stuck.status == Status.EXECUTING
    # WHEN AWS is back and the lease has run out, the next request resumes it
    rt.locks.release("staging", "api", result["audit_id"])
    again = rollback_flow(
        request=request(environment="staging", requested_by="t"), config_path=str(config)
    )
    assert rt.audit.get(result["audit_id"]).status == Status.INTERRUPTED
    assert again["status"] == "succeeded", again
    assert (again["from_version"], again["to_version"]) == ("api:4", "api:3")
    assert os.environ["AWS_ENDPOINT_URL"] == aws
