"""One factory, one credentials owner: a configured ``aws.credentials_block`` reaches every
AWS client the rollback flow, the health guard and the reports build — none falls back
to the worker's ambient credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from deployments.cli.main import app
from flows.health_guard import health_guard_flow
from flows.metrics_report import metrics_report
from flows.rollback_flow import rollback_flow
from rollback import aws as aws_clients
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
    # GIVEN a config naming a credentials block and a guarded Lambda
    def with_block(data: dict[str, Any]) -> None:
        data["aws"] = {"credentials_block": BLOCK}
        data["health_guard"] = {
            "services": [
                {"environment": "staging", "service": "api", "lambda_function": "demo-worker"}
            ]
        }

    monkeypatch.setattr(aws_clients, "_session", block_sessions)
    config_path = make_world(tmp_path, edit=with_block)
    spy = ClientSpy(monkeypatch)
    # WHEN the flow rolls back and the guard ticks
    result = rollback_flow(
        request=RollbackRequest(environment="staging", service="api", requested_by="t"),
        config_path=str(config_path),
    )
    ticks = health_guard_flow(config_path=str(config_path), mode="embedded")
    made = list(spy.made)
    # THEN every client was built with the block's credentials, and each kind was used
    assert result["status"] == "succeeded", result
    assert len(ticks) == 1
    assert service_task_definition("api-staging") == "api:3"
    services = {service for service, _ in made}
    assert {"ecs", "ecr", "dynamodb", "cloudwatch"} <= services, services
    ambient = [(s, key) for s, key in made if key != BLOCK_KEY]
    assert ambient == [], f"clients built with other credentials: {ambient}"


NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
NOW_ISO = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_credentials_block_reaches_every_report_client(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a config naming a credentials block, with report metrics and an S3 prefix,
    # the demo history, one CloudWatch datapoint and the reports bucket
    def with_block(data: dict[str, Any]) -> None:
        data["aws"] = {"credentials_block": BLOCK}
        data["reports"] = {
            "out_dir": str(tmp_path / "reports"),
            "s3_prefix": "s3://team-reports/daily",
            "metrics": {
                "staging/api": [
                    {"namespace": "AWS/Lambda", "name": "Errors", "stat": "Sum",
                     "dimensions": {"FunctionName": "demo-worker"}}
                ]
            },
        }  # fmt: skip

    monkeypatch.setattr(aws_clients, "_session", block_sessions)
    config_path = make_world(tmp_path, edit=with_block)
    boto3.client("s3").create_bucket(Bucket="team-reports")
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": "demo-worker"}],
                "Timestamp": NOW - timedelta(minutes=50),
                "Value": 3.0,
            }
        ],
    )
    spy = ClientSpy(monkeypatch)
    # WHEN the metrics-report flow writes its files to S3
    written = metrics_report(
        environment="staging", days=7, config_path=str(config_path), now=NOW_ISO
    )
    by_flow = list(spy.made)
    # AND the CLI writes the 30-day report there too
    cli = CliRunner().invoke(
        app, ["report", "--config", str(config_path), "--env", "staging", "--now", NOW_ISO]
    )
    by_cli = spy.made[len(by_flow) :]
    # THEN both read the history and the audit log (DynamoDB), CloudWatch and wrote to
    # S3 with clients built from the block's credentials, and none from other ones
    assert cli.exit_code == 0, cli.output
    for made in (by_flow, by_cli):
        assert {"dynamodb", "cloudwatch", "s3"} <= {service for service, _ in made}, made
        ambient = [(s, key) for s, key in made if key != BLOCK_KEY]
        assert ambient == [], f"clients built with other credentials: {ambient}"
    # AND what they read and wrote is really there: every file under the prefix, the
    # demo history counted, the datapoint in the metrics file
    stamp = NOW.strftime("%Y%m%d-%H%M%S")
    listing = boto3.client("s3").list_objects_v2(Bucket="team-reports", Prefix="daily/")
    keys = {o["Key"] for o in listing["Contents"]}
    uploaded = [loc for loc in written["staging"] if loc.startswith("s3://")]
    assert len(uploaded) == 4 and {f"s3://team-reports/{k}" for k in keys} >= set(uploaded)
    assert len(keys) == 8
    body = boto3.client("s3").get_object(
        Bucket="team-reports", Key=f"daily/deployment-stats-staging-30d-{stamp}.json"
    )["Body"]
    assert json.loads(body.read())["stats"]["totalDeployments"] > 0
    body = boto3.client("s3").get_object(
        Bucket="team-reports", Key=f"daily/cloudwatch-metrics-staging-7d-{stamp}.json"
    )["Body"]
    errors = json.loads(body.read())["services"]["api"]["Errors"]
    assert [p["value"] for p in errors["datapoints"]] == [3.0]
