"""E-mail through SNS, against the moto server: a topic with an SQS subscription stands
for the e-mail subscribers, and the test reads what they would get."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.rollback_flow import rollback_flow
from rollback import aws
from rollback.config import Config
from rollback.models import RollbackOutcome, RollbackRequest
from rollback.notifiers.github_deployments import statuses_for
from rollback.notifiers.mail import email_text
from tests.fakes.github_server import FakeGitHub
from tests.functional.receiver_rig import edit_config, running, seed_world, write_config


def subscribed_queue(topic_name: str = "deployments-staging") -> tuple[str, str]:
    """(topic ARN, queue URL): an SQS queue subscribed to a new topic (raw delivery off,
    so the SNS envelope with its Subject arrives)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{topic_name}-mail")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(queue: str) -> list[dict[str, Any]]:
    out = aws.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in out.get("Messages", [])]


@pytest.fixture
def world(aws: str, prefect_server: None, tmp_path: Path) -> tuple[Config, Path, str]:
    path = write_config(tmp_path / "config.yaml")
    topic, queue = subscribed_queue()

    def add(data: dict[str, Any]) -> None:
        data["notifications"] = {"sns": {"environments": {"staging": topic}}}

    edit_config(path, add)
    return seed_world(path), path, queue


def test_a_rollback_outcome_is_emailed_through_sns(world: tuple[Config, Path, str]) -> None:
    _, path, queue = world
    # GIVEN staging's topic has a subscriber  WHEN staging/api is rolled back
    request = RollbackRequest(
        environment="staging", service="api", reason="5xx spike\nFAKE: line", requested_by="ops"
    )
    result = rollback_flow(request=request, config_path=str(path))
    assert result["status"] == "succeeded" and running() == "api:3"
    # THEN the subscriber got one message: a one-line ASCII subject and the outcome
    messages = received(queue)
    assert len(messages) == 1
    subject, body = messages[0]["Subject"], messages[0]["Message"]
    assert subject.startswith("[succeeded]") and len(subject) < 100 and subject.isascii()
    assert "api:4 -> api:3" in body and result["audit_id"] in body
    assert "5xx spike FAKE: line" in body  # outside text stays on one line


def test_a_verification_rollback_email_carries_the_evidence() -> None:
    outcome = RollbackOutcome(
        status="succeeded",
        environment="prod",
        service="api",
        audit_id="a1",
        from_version="api:4",
        to_version="api:3",
        trigger="verification",
        request_reason="verification failed for api:4: 5xx-rate: 0.5 → 6, effect +1100%, "
        "p=1e-05 (relative: ...); latency: 0.13 → 0.33, effect +150% (relative: ...)",
        headline="Verification of api:4 failed, rollback succeeded",
    )
    subject, body = email_text(outcome, "http://ui/runs/flow-run/1")
    lines = body.splitlines()
    assert subject == "[succeeded] Verification of api:4 failed, rollback succeeded"
    assert "  5xx-rate: 0.5 -> 6, effect +1100%, p=1e-05 (relative: ...)" in lines
    assert any(line.startswith("  latency: 0.13 -> 0.33") for line in lines)
    assert "Flow run: http://ui/runs/flow-run/1" in lines


@pytest.fixture
def github_world(
    aws: str, prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, FakeGitHub]]:
    # The failed deploy of api:4 is GitHub deployment 1 (newest) of acme/shop to staging.
    fake = FakeGitHub(
        repository="acme/shop",
        deployments=[{"environment": "staging", "sha": f"{4:040x}", "ref": "v4"}],
    )
    with fake:
        monkeypatch.setenv("TEST_GH_TOKEN", "gh-token-value")
        path = write_config(tmp_path / "config.yaml")

        def add(data: dict[str, Any]) -> None:
            data["notifications"] = {
                "github_deployments": {
                    "token_env": "TEST_GH_TOKEN",
                    "base_url": fake.base_url,
                    "services": {
                        "staging/api": {"repository": "acme/shop", "environment": "staging"}
                    },
                }
            }

        edit_config(path, add)
        seed_world(path)
        yield path, fake


def test_a_rollback_is_mirrored_in_github_deployments(
    github_world: tuple[Path, FakeGitHub],
) -> None:
    path, fake = github_world
    # GIVEN a person rolls staging/api back (GitHub still thinks deployment 1 is fine)
    request = RollbackRequest(environment="staging", service="api", reason="5xx")
    # WHEN the rollback succeeds
    result = rollback_flow(request=request, config_path=str(path))
    assert result["status"] == "succeeded"
    # THEN deployment 1 is marked failure, and api:3's commit got a deployment + success
    # status, each with the run link as log_url
    assert [(i, b["state"]) for i, b in fake.deployment_statuses] == [
        (1, "failure"),
        (1000, "success"),
    ]
    created = fake.created_deployments[0]
    assert created["ref"] == f"{3:040x}" and created["task"] == "rollback"
    assert created["environment"] == "staging" and result["audit_id"] in created["description"]
    assert all(
        b.get("log_url", "").endswith(result["flow_run_id"]) for _, b in fake.deployment_statuses
    )
    assert all("gh-token-value" in h for h in fake.auth_headers)


def test_github_states_per_outcome() -> None:
    assert statuses_for("succeeded", "webhook") == ("inactive", "success")
    assert statuses_for("succeeded", "verification") == ("failure", "success")
    assert statuses_for("failed", "alarm") == ("failure", "failure")
    assert statuses_for("refused", "alarm") is None


def test_slack_carries_a_verification_rollbacks_evidence() -> None:
    from rollback.notifiers.message import slack_payload

    outcome = RollbackOutcome(
        status="succeeded",
        environment="prod",
        service="api",
        audit_id="a1",
        trigger="verification",
        request_reason="verification failed for api:4: 5xx-rate: 0.5 → 6 (relative: p); "
        "latency: 0.1 → 0.3 (relative: q); cpu: 1 → 1 (pass)",
    )
    lines = slack_payload(outcome, "#c", None)["text"].splitlines()
    evidence = [line for line in lines if line.startswith("*Evidence:*")]
    assert evidence == [
        "*Evidence:* 5xx-rate: 0.5 → 6 (relative: p)",
        "*Evidence:* latency: 0.1 → 0.3 (relative: q)",
    ]
