"""Lambda alias rollbacks against the real moto server (zip functions, no docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.sandbox_lambda import seed_lambda
from flows.rollback_flow import rollback_flow
from rollback import aws as aws_clients
from rollback import decisions
from rollback.errors import NotFoundError
from rollback.models import RollbackRequest
from rollback.targets.lambda_alias import LambdaAliasConfig, LambdaAliasTarget
from tests.fakes.flow_config import write_config


def _target(function: str = "demo-fn") -> LambdaAliasTarget:
    config = LambdaAliasConfig(type="lambda", function=function, alias="live", poll_interval_s=0.05)
    return LambdaAliasTarget(config)


def _alias(function: str = "demo-fn") -> dict:
    return aws_clients.client("lambda").get_alias(FunctionName=function, Name="live")


def test_rollback_moves_alias_to_previous_version_and_clears_weights(aws: str) -> None:
    # GIVEN versions 1..3, the alias on 3 with 10% canary traffic still going to 2
    seed_lambda("demo-fn")
    aws_lambda = _lambda()
    aws_lambda.update_alias(
        FunctionName="demo-fn",
        Name="live",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    target = _target()
    # WHEN the target resolves, checks, executes, stabilizes and verifies
    current = target.current()
    chosen = decisions.fallback_candidates(target.candidates(), current, frozenset())[0]
    checks = target.check(current, chosen)
    target.execute(chosen)
    lines: list[str] = []
    settled = target.stabilize(chosen, timeout_s=5, progress=lines.append)
    verified = target.verify(chosen)
    # THEN version 2 is chosen, every check passes and AWS shows the alias on 2, unweighted
    assert (current.id, current.label) == ("3", "demo-fn:3")
    assert [v.id for v in target.candidates()] == ["3", "2", "1"]
    assert chosen.id == "2"
    assert all(c.passed for c in checks), checks
    assert settled.stable, settled
    assert lines and "version 2" in lines[-1]
    assert all(c.passed for c in verified), verified
    alias = _alias()
    assert alias["FunctionVersion"] == "2"
    assert not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")


def test_verify_fails_while_the_alias_is_elsewhere(aws: str) -> None:
    seed_lambda("demo-fn")
    target = _target()
    # GIVEN no change made WHEN verifying version 1 THEN the alias check fails
    verified = {c.name: c for c in target.verify(target.lookup("1"))}
    assert not verified["alias_on_target"].passed
    assert "version 3" in verified["alias_on_target"].detail
    # AND stabilize gives up after its timeout
    assert target.stabilize(target.lookup("1"), timeout_s=0.2, progress=lambda _: None).stable is (
        False
    )


def test_latest_and_missing_versions_are_never_targets(aws: str) -> None:
    seed_lambda("demo-fn")
    target = _target()
    current = target.current()
    # WHEN $LATEST is asked for THEN the published-version check refuses it
    checks = {c.name: c for c in target.check(current, target.lookup("$LATEST"))}
    assert not checks["published_version"].passed
    # WHEN a version that does not exist is asked for THEN lookup says so
    with pytest.raises(NotFoundError, match="version 9 of Lambda function 'demo-fn' not found"):
        target.lookup("9")
    assert target.lookup("demo-fn:1").order == 1


def test_missing_alias_is_a_clear_error(aws: str) -> None:
    seed_lambda("demo-fn")
    config = LambdaAliasConfig(type="lambda", function="demo-fn", alias="nope")
    with pytest.raises(NotFoundError, match="alias 'nope' of Lambda function 'demo-fn'"):
        LambdaAliasTarget(config).current()


def test_flow_rolls_back_alias(aws: str, prefect_server: None, tmp_path: Path) -> None:
    # GIVEN a config with one Lambda service whose alias is on 3
    seed_lambda("demo-fn")
    path = write_config(
        tmp_path / "rollback.yaml", "fn", {"type": "lambda", "function": "demo-fn", "alias": "live"}
    )
    # WHEN the rollback flow runs
    out = rollback_flow(
        request=RollbackRequest(environment="staging", service="fn", reason="bad release"),
        config_path=str(path),
    )
    # THEN it succeeds and the alias points at 2
    assert out["status"] == "succeeded", out
    assert (out["from_version"], out["to_version"]) == ("3", "2")
    assert _alias()["FunctionVersion"] == "2"


def test_flow_refuses_when_no_earlier_version(
    aws: str, prefect_server: None, tmp_path: Path
) -> None:
    # GIVEN a function with a single published version
    seed_lambda("solo-fn", versions=1)
    path = write_config(
        tmp_path / "rollback.yaml", "fn", {"type": "lambda", "function": "solo-fn", "alias": "live"}
    )
    # WHEN the rollback flow runs
    out = rollback_flow(
        request=RollbackRequest(environment="staging", service="fn"), config_path=str(path)
    )
    # THEN it is refused and nothing changed
    assert out["status"] == "refused", out
    assert out["to_version"] is None
    assert "no earlier published version of solo-fn to roll back to" in out["reason"]
    assert _alias("solo-fn")["FunctionVersion"] == "1"
    assert _target("solo-fn").no_target_reason == (
        "no earlier published version of solo-fn to roll back to"
    )


def test_flow_refuses_latest(aws: str, prefect_server: None, tmp_path: Path) -> None:
    seed_lambda("demo-fn")
    path = write_config(
        tmp_path / "rollback.yaml", "fn", {"type": "lambda", "function": "demo-fn", "alias": "live"}
    )
    out = rollback_flow(
        request=RollbackRequest(environment="staging", service="fn", to="$LATEST"),
        config_path=str(path),
    )
    assert out["status"] == "refused", out
    failed = [c["name"] for c in out["checks"] if not c["passed"]]
    # $LATEST is unpublished and the newest code: never a rollback target
    assert failed == ["target_older", "published_version"]
    assert _alias()["FunctionVersion"] == "3"


def _lambda():  # noqa: ANN202 - a boto3 client
    return aws_clients.client("lambda")
