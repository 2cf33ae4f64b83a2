"""One factory, one credentials owner: a configured ``aws.credentials_block`` reaches every
AWS client the rollback flow, the health guard and the reports build — none falls back
to the worker's ambient credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from flows.health_guard import health_guard_flow
from flows.rollback_flow import rollback_flow
from reports import pipeline
from rollback import aws as aws_clients
from rollback.config import load_config
from rollback.models import RollbackRequest
from tests.functional.world import make_world, service_task_definition

pytestmark = pytest.mark.usefixtures("prefect_server")

BLOCK = "team-aws"
BLOCK_KEY = "from-the-credentials-block"  # not a real key: moto accepts any


class ClientSpy:
    """Records the access key of every boto3 client created while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[tuple[str, str]] = []
        original = boto3.session.Session.client
        spy = self

        def client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            creds = session.get_credentials()
            spy.made.append((service_name, creds.access_key if creds else "none"))
            return original(session, service_name, *args, **kwargs)

        monkeypatch.setattr(boto3.session.Session, "client", client)


def block_sessions(block: str | None) -> Any:
    """What prefect-aws's AwsCredentials.load(block).get_boto3_session() gives: a session
    with the block's own keys (the worker's ambient keys are "testing")."""
    if block == BLOCK:
        return boto3.session.Session(
            aws_access_key_id=BLOCK_KEY,
            aws_secret_access_key="block-secret",
            region_name="us-east-1",
        )
    return boto3.session.Session()


def test_the_credentials_block_reaches_every_client(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a config naming a credentials block, a guarded Lambda and report metrics
    def with_block(data: dict[str, Any]) -> None:
        data["aws"] = {"credentials_block": BLOCK}
        data["health_guard"] = {
            "services": [
                {"environment": "staging", "service": "api", "lambda_function": "demo-worker"}
            ]
        }
        data["reports"] = {"out_dir": str(tmp_path / "reports")}

    monkeypatch.setattr(aws_clients, "_session", block_sessions)
    config_path = make_world(tmp_path, edit=with_block)
    config = load_config(config_path)
    spy = ClientSpy(monkeypatch)
    # WHEN the flow rolls back, the guard ticks and the report is written
    result = rollback_flow(
        request=RollbackRequest(environment="staging", service="api", requested_by="t"),
        config_path=str(config_path),
    )
    ticks = health_guard_flow(config_path=str(config_path), mode="embedded")
    pipeline.generate(config, "staging", out_dir=str(tmp_path / "reports"))
    made = list(spy.made)
    # THEN every client was built with the block's credentials, and each kind was used
    assert result["status"] == "succeeded", result
    assert len(ticks) == 1
    assert service_task_definition("api-staging") == "api:3"
    services = {service for service, _ in made}
    assert {"ecs", "ecr", "dynamodb", "cloudwatch"} <= services, services
    ambient = [(s, key) for s, key in made if key != BLOCK_KEY]
    assert ambient == [], f"clients built with other credentials: {ambient}"
