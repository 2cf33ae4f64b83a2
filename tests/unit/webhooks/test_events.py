"""Event mapping: real GitHub and CloudWatch payloads to requests or ignore reasons."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.events import (
    Ignored,
    alarm_change,
    alarm_request,
    github_event,
    route_errors,
    sns_alarm_payload,
)
from rollback.config import parse_config
from rollback.config.webhooks import AlarmRoute, GithubRule, GithubWebhookConfig
from rollback.models import RollbackRequest
from tests.unit.webhooks.helpers import (
    alarm_action,
    eventbridge_alarm,
    failed_run,
    fixture,
    sns_alarm_message,
    sns_notification,
)

RULE = GithubRule(
    repository="Octo-Org/Octo-Repo", workflow="test", environment="prod", service="api"
)
CFG = GithubWebhookConfig(rules=[RULE], ignore_actors=["rollback-bot"])


def mapped(payload: Any, event: str = "workflow_run", cfg: GithubWebhookConfig = CFG) -> Any:
    return github_event(event, "d-1", payload, cfg)


def test_failed_run_becomes_a_webhook_request() -> None:
    req = mapped(failed_run())
    assert isinstance(req, RollbackRequest)
    assert (req.environment, req.service, req.trigger) == ("prod", "api", "webhook")
    assert req.source_event_id == "github:octo-org/octo-repo/actions/runs/289782451/attempts/1"
    assert req.automatic
    # another attempt of the run is another incident; a run without an id falls back
    assert mapped(failed_run(run_attempt=2)).source_event_id.endswith("/attempts/2")
    assert "without a numeric id" in mapped(failed_run(id=None)).reason
    assert req.requested_by == "github:Codertocat"
    assert "concluded failure on master" in req.reason
    assert isinstance(mapped(failed_run("timed_out")), RollbackRequest)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (fixture("workflow_run.completed.payload"), "concluded 'success'"),
        (fixture("workflow_run.requested.payload"), "action 'requested'"),
        (failed_run("cancelled"), "concluded 'cancelled'"),
        ({"action": "completed"}, "without a workflow_run"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_runs_that_are_not_failures_are_ignored(payload: Any, reason: str) -> None:
    out = mapped(payload)
    assert isinstance(out, Ignored) and reason in out.reason


@pytest.mark.parametrize(
    "run",
    [
        {"name": "Rollback prod"},
        {"name": "deploy", "path": ".github/workflows/auto-ROLLBACK.yaml"},
        {"display_title": "rollback:abc123 prod/api"},
        {"triggering_actor": {"login": "rollback-bot"}},
    ],
)
def test_loop_prevention(run: dict[str, Any]) -> None:
    out = mapped(failed_run(**run))
    assert isinstance(out, Ignored) and "loop prevention" in out.reason


def test_rollback_pattern_is_configurable() -> None:
    cfg = GithubWebhookConfig(rules=[RULE], rollback_pattern=r"^revert-")
    assert isinstance(mapped(failed_run(name="Rollback prod"), cfg=cfg), RollbackRequest)
    assert isinstance(mapped(failed_run(name="revert-prod"), cfg=cfg), Ignored)


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        ({"workflow": ".github/workflows/test.yml"}, True),
        ({"workflow": "test.yml"}, True),
        ({"workflow": "deploy"}, False),
        ({"workflow": None}, True),
        ({"branch": "master"}, True),
        ({"branch": "main"}, False),
        ({"repository": "octo-org/other"}, False),
    ],
)
def test_rules(rule: dict[str, Any], matches: bool) -> None:
    data = {"repository": "octo-org/octo-repo", "environment": "prod", "service": "api"} | rule
    cfg = GithubWebhookConfig(rules=[GithubRule(**data)])
    out = mapped(failed_run(), cfg=cfg)
    assert isinstance(out, RollbackRequest) is matches
    if not matches:
        assert "no rule maps octo-org/octo-repo" in out.reason


def test_first_matching_rule_wins() -> None:
    rules = [
        GithubRule(
            repository="octo-org/octo-repo", branch="main", environment="prod", service="api"
        ),
        GithubRule(repository="octo-org/octo-repo", environment="staging", service="api"),
    ]
    out = mapped(failed_run(), cfg=GithubWebhookConfig(rules=rules))
    assert out.environment == "staging"


def test_deployment_status() -> None:
    rule = GithubRule(
        repository="Codertocat/Hello-World",
        github_environment="production",
        environment="prod",
        service="api",
    )
    cfg = GithubWebhookConfig(rules=[rule])
    payload = fixture("deployment_status.payload")
    assert "state 'success'" in mapped(payload, "deployment_status", cfg).reason
    for state in ("failure", "error"):
        payload["deployment_status"]["state"] = state
        req = mapped(payload, "deployment_status", cfg)
        assert isinstance(req, RollbackRequest) and f"reported {state}" in req.reason
    # a rule naming a workflow does not match a payload that names none
    named = GithubWebhookConfig(rules=[rule.model_copy(update={"workflow": "deploy"})])
    assert isinstance(mapped(payload, "deployment_status", named), Ignored)
    payload["deployment"]["task"] = "rollback"
    assert "loop prevention" in mapped(payload, "deployment_status", cfg).reason


def test_other_events() -> None:
    assert "ping" in mapped({"zen": "x"}, "ping").reason
    assert "not handled" in mapped(fixture("deployment.payload"), "deployment").reason
    assert (
        "not handled"
        in mapped(
            fixture("workflow_job.completed.failure.with-organization.payload"), "workflow_job"
        ).reason
    )


ALARMS = {
    "Test alert": AlarmRoute(environment="prod", service="api"),
    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:by-arn": AlarmRoute(
        environment="staging", service="api"
    ),
}


def test_alarm_shapes() -> None:
    action = alarm_change(fixture("cloudwatch-alarm-lambda-action"))
    assert action is not None and action.shape == "alarm-action"
    assert (action.name, action.new_state, action.old_state) == ("Test alert", "ALARM", "OK")
    assert action.event_id.startswith("arn:aws:cloudwatch:eu-west-1:912397435824:alarm:test_alarm@")
    bridge = alarm_change(eventbridge_alarm("by-arn"))
    assert bridge is not None and bridge.shape == "eventbridge" and bridge.arn.endswith(":by-arn")
    sns = alarm_change(sns_alarm_payload(sns_notification(sns_alarm_message("x"))))
    assert sns is not None and sns.shape == "sns" and sns.new_state == "ALARM"
    assert alarm_change({"foo": 1}) is None and alarm_change("x") is None
    assert sns_alarm_payload({"Message": "not json"}) is None


def test_alarm_requests() -> None:
    req = alarm_request(ALARMS, alarm_change(fixture("cloudwatch-alarm-lambda-action")))
    assert isinstance(req, RollbackRequest) and req.trigger == "alarm"
    assert (req.environment, req.service) == ("prod", "api")
    assert req.source_event_id.startswith("cloudwatch:arn:aws:cloudwatch:eu-west-1")
    by_arn = alarm_request(ALARMS, alarm_change(eventbridge_alarm("by-arn")), "sns:m1")
    assert by_arn.environment == "staging" and by_arn.source_event_id == "cloudwatch:sns:m1"
    for payload, reason in [
        (alarm_action("Test alert", new="OK", old="ALARM"), "went to OK"),
        (alarm_action("Test alert", new="ALARM", old="ALARM"), "already in ALARM"),
        (alarm_action("Other"), "not mapped"),
    ]:
        out = alarm_request(ALARMS, alarm_change(payload))
        assert isinstance(out, Ignored) and reason in out.reason


def test_route_errors_name_unknown_services() -> None:
    config = parse_config(
        {
            "environments": {
                "prod": {"services": {"api": {"type": "ecs", "cluster": "c", "service": "s"}}}
            },
            "webhooks": {
                "github": {
                    "rules": [{"repository": "a/b", "environment": "prod", "service": "web"}]
                }
            },
            "alarms": {"x": {"environment": "qa", "service": "api"}},
            "health_guard": {
                "services": [{"environment": "prod", "service": "api", "url": "http://h"}]
            },
        }
    )
    assert route_errors(config) == [
        "webhooks.github.rules[0]: unknown environment/service prod/web",
        "alarms['x']: unknown environment/service qa/api",
    ]
