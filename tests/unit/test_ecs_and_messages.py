"""ECS pure helpers, retry classification and notification messages."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError

from rollback.aws import is_transient, translate
from rollback.errors import NotFoundError, TargetError, TransientError
from rollback.models import CheckResult, RollbackOutcome
from rollback.notifiers.message import markdown_report, slack_payload
from rollback.notifiers.slack import SlackNotifier
from rollback.targets.ecs import _stability, image_tag


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


def test_image_tag_parsing():
    assert image_tag("123.dkr.ecr.us-east-1.amazonaws.com/api:v3") == ("api", "v3")
    assert image_tag("nginx") == ("nginx", None)
    assert image_tag("repo/app@sha256:abc") == ("app", None)
    assert image_tag("localhost:5000/team/app:1.2") == ("app", "1.2")


def test_stability_needs_target_counts_and_one_settled_deployment():
    svc = {
        "taskDefinition": "arn:x/api:3",
        "runningCount": 2,
        "desiredCount": 2,
        "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED"}],
    }
    assert _stability(svc, "arn:x/api:3")[0]
    assert not _stability(svc, "arn:x/api:4")[0]
    assert not _stability({**svc, "runningCount": 1}, "arn:x/api:3")[0]
    two = [
        {"status": "PRIMARY", "rolloutState": "IN_PROGRESS"},
        {"status": "ACTIVE", "rolloutState": "COMPLETED"},
    ]
    assert not _stability({**svc, "deployments": two}, "arn:x/api:3")[0]


def test_transient_classification():
    assert is_transient(client_error("ThrottlingException"))
    assert is_transient(client_error("Whatever", 503))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert not is_transient(client_error("AccessDeniedException", 403))
    assert not is_transient(NotFoundError("no"))
    assert isinstance(translate(client_error("Throttling"), "x"), TransientError)
    assert isinstance(translate(client_error("Nope"), "x", not_found=("Nope",)), NotFoundError)
    assert type(translate(client_error("AccessDenied", 403), "x")) is TargetError


def outcome(status: str = "succeeded") -> RollbackOutcome:
    return RollbackOutcome(
        status=status,
        environment="prod",
        service="api",
        audit_id="a1",
        from_version="api:4",
        to_version="api:3",
        checks=[CheckResult("images_exist", status != "refused", "missing in ECR: api:v3")],
        trigger="webhook",
        requested_by="github",
        request_reason="deploy failed",
        duration_s=12.5,
        headline="Deploy of api:4 failed, rollback succeeded",
    )


def test_slack_payload_has_every_fact():
    payload = slack_payload(outcome(), "#deployments-production", "http://ui/runs/flow-run/1")
    text = payload["text"]
    assert payload["channel"] == "#deployments-production"
    for fact in ("prod", "api", "api:4 → api:3", "deploy failed", "github", "12.5s", "webhook"):
        assert fact in text
    assert "http://ui/runs/flow-run/1" in text


def test_failed_and_refused_messages_say_what_to_do():
    assert "human" in slack_payload(outcome("failed"), "#d", None)["text"]
    refused = slack_payload(outcome("refused"), "#d", None)["text"]
    assert "Failed checks:* images_exist: missing in ECR" in refused


def test_markdown_report_tables_checks_and_timeline():
    out = outcome()
    out.timeline = [("2026-01-01T00:00:00Z", "switched to api:3")]
    md = markdown_report(out, None)
    assert "| images_exist | pass |" in md and "switched to api:3" in md


def test_slack_notifier_never_shows_its_url():
    notifier = SlackNotifier("https://hooks.example/services/T/B/xyz123token")
    assert "xyz123token" not in repr(notifier)
