"""The pure mapping of AWS-native EventBridge events (ECS, CodeDeploy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deployments import aws_events
from deployments.events import Ignored
from rollback.config import parse_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "aws-events"
SERVICE_ARN = "arn:aws:ecs:us-east-1:123456789012:service/demo-cluster/api-staging"


def event(name: str, **detail: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    if data["source"] == "aws.ecs":
        data["resources"] = [SERVICE_ARN]
    data["detail"].update(detail)
    return data


CONFIG = parse_config(
    {
        "environments": {
            "staging": {
                "auto_rollback": True,
                "services": {
                    "api": {"type": "ecs", "cluster": "demo-cluster", "service": "api-staging"},
                    "web": {
                        "type": "codedeploy",
                        "application": "myApplication",
                        "deployment_group": "myDeploymentGroup",
                    },
                },
            }
        }
    }
)


def test_ecs_failure_maps_to_the_configured_service() -> None:
    # GIVEN the documented SERVICE_DEPLOYMENT_FAILED event for a configured service
    payload = event("ecs-deployment-failed.json")
    # WHEN mapped
    mapped = aws_events.aws_event(payload, CONFIG)
    # THEN it names staging/api and is keyed by its deployment
    assert isinstance(mapped, aws_events.PlatformFailure)
    assert (mapped.environment, mapped.service, mapped.platform) == ("staging", "api", "ecs")
    assert mapped.source_event_id == "aws:ecs:demo-cluster/api-staging/ecs-svc/123"
    request = mapped.request()
    assert request.trigger == "webhook" and request.automatic
    assert "circuit breaker" in request.reason


def test_the_two_ecs_event_kinds_are_one_incident() -> None:
    # GIVEN the Deployment State Change and the Service Action about the same deployment
    a = aws_events.aws_event(event("ecs-deployment-failed.json"), CONFIG)
    b = aws_events.aws_event(event("ecs-service-action-deployment-failed.json"), CONFIG)
    # THEN they share one source event id (ids of the events differ)
    assert isinstance(a, aws_events.PlatformFailure) and isinstance(b, aws_events.PlatformFailure)
    assert a.source_event_id == b.source_event_id


def test_ecs_events_that_ask_for_nothing() -> None:
    cases = [
        (event("ecs-deployment-failed.json", eventName="SERVICE_DEPLOYMENT_IN_PROGRESS"), "acting"),
        ({**event("ecs-deployment-failed.json"), "resources": []}, "service ARN"),
        (
            {
                **event("ecs-deployment-failed.json"),
                "resources": [SERVICE_ARN.replace("api-", "x-")],
            },
            "not configured",
        ),
        ({**event("ecs-deployment-failed.json"), "source": "aws.ec2"}, "not acted on"),
    ]
    for payload, why in cases:
        mapped = aws_events.aws_event(payload, CONFIG)
        assert isinstance(mapped, Ignored) and why in mapped.reason, (payload, mapped)
    done = aws_events.aws_event(event("ecs-deployment-completed.json"), CONFIG)
    assert isinstance(done, aws_events.DeployCompleted) and done.service == "api"


def test_codedeploy_failure_and_stop_map_by_application_and_group() -> None:
    for state in ("FAILURE", "STOP"):
        mapped = aws_events.aws_event(event("codedeploy-state-change.json", state=state), CONFIG)
        assert isinstance(mapped, aws_events.PlatformFailure)
        assert (mapped.environment, mapped.service, mapped.state) == ("staging", "web", state)
        assert mapped.source_event_id == "aws:codedeploy:d-123456789"
    ok = aws_events.aws_event(event("codedeploy-state-change.json", state="SUCCESS"), CONFIG)
    assert isinstance(ok, Ignored)
    other = aws_events.aws_event(event("codedeploy-state-change.json", deploymentGroup="x"), CONFIG)
    assert isinstance(other, Ignored) and "not configured" in other.reason


def test_codedeploy_auto_rollback_coverage() -> None:
    assert aws_events.codedeploy_covers("FAILURE", True, {"DEPLOYMENT_FAILURE"})
    assert not aws_events.codedeploy_covers("FAILURE", False, {"DEPLOYMENT_FAILURE"})
    assert not aws_events.codedeploy_covers("STOP", True, {"DEPLOYMENT_FAILURE"})
    assert aws_events.codedeploy_covers("STOP", True, {"DEPLOYMENT_STOP_ON_ALARM"})


def test_service_arns() -> None:
    assert aws_events.ecs_service_of(SERVICE_ARN) == ("demo-cluster", "api-staging")
    for bad in ("", "arn:aws:ecs:us-east-1:1:service/api", "arn:aws:lambda:x:1:service/a/b"):
        assert aws_events.ecs_service_of(bad) is None
    assert not aws_events.is_aws_event({"source": "aws.ecs"})
    assert not aws_events.is_aws_event([1])


def test_github_deployment_success_maps_to_a_bake() -> None:
    from deployments.deploy_success import github_deployment_success
    from rollback.config.webhooks import GithubWebhookConfig
    from tests.unit.webhooks.helpers import fixture

    cfg = GithubWebhookConfig.model_validate(
        {"rules": [{"repository": "acme/shop", "environment": "staging", "service": "api"}]}
    )
    payload = fixture("deployment_status.payload")
    payload["repository"]["full_name"] = "acme/shop"
    payload["deployment_status"]["state"] = "success"
    done = github_deployment_success(payload, cfg)
    assert done is not None and (done.environment, done.service) == ("staging", "api")
    assert done.key.startswith("github:acme/shop/deployments/")
    # our own rollback's deployment, a failure, or an unmapped repository: no bake
    ours = payload | {"deployment": payload["deployment"] | {"task": "rollback"}}
    assert github_deployment_success(ours, cfg) is None
    failed = payload | {"deployment_status": payload["deployment_status"] | {"state": "failure"}}
    assert github_deployment_success(failed, cfg) is None
    other = payload | {"repository": payload["repository"] | {"full_name": "x/y"}}
    assert github_deployment_success(other, cfg) is None
