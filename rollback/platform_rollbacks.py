"""What the platform itself does about a failed deployment: the ECS deployment circuit
breaker and CodeDeploy automatic rollbacks. One read per method, our own models out;
``PlatformFailure`` (a failed deployment mapped to a service) and ``codedeploy_covers``
are pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rollback import aws
from rollback.errors import NotFoundError
from rollback.models import RollbackRequest

Platform = Literal["ecs", "codedeploy"]
# CodeDeploy automatic-rollback events that cover each failed state.
CODEDEPLOY_COVERING = {
    "FAILURE": frozenset({"DEPLOYMENT_FAILURE"}),
    "STOP": frozenset({"DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"}),
}


@dataclass(frozen=True)
class PlatformFailure:
    """A deployment the platform reports as failed, mapped to a configured service."""

    platform: Platform
    environment: str
    service: str
    deployment_id: str
    source_event_id: str
    reason: str
    state: str  # ECS: the eventName; CodeDeploy: FAILURE | STOP

    def request(self, suffix: str = "") -> RollbackRequest:
        """Our own rollback for this failure (trigger ``webhook``: a failed deploy)."""
        return RollbackRequest(
            environment=self.environment,
            service=self.service,
            reason=self.reason[:500],
            requested_by=f"aws:{self.platform}",
            trigger="webhook",
            source_event_id=self.source_event_id + suffix,
        )


def codedeploy_covers(state: str, enabled: bool, events: frozenset[str] | set[str]) -> bool:
    """Does a CodeDeploy automatic-rollback configuration cover a deployment ending
    ``state``?"""
    return enabled and bool(CODEDEPLOY_COVERING.get(state, frozenset()) & set(events))


@dataclass(frozen=True)
class EcsServiceState:
    """An ECS service as the circuit-breaker watch needs it."""

    task_definition: str  # family:revision the service runs
    circuit_breaker_rollback: bool
    deployments: tuple[tuple[str, str, str], ...] = ()  # (id, family:revision, status)
    running: int = 0
    desired: int = 0

    def task_definition_of(self, deployment_id: str) -> str | None:
        for dep_id, task_def, _ in self.deployments:
            if dep_id == deployment_id:
                return task_def
        return None

    @property
    def steady(self) -> bool:
        """One deployment left and every desired task running."""
        return len(self.deployments) <= 1 and self.running >= self.desired


@dataclass(frozen=True)
class CodeDeployState:
    """A CodeDeploy deployment and its automatic-rollback settings."""

    deployment_id: str
    status: str
    auto_rollback_enabled: bool
    auto_rollback_events: frozenset[str]
    rollback_deployment_id: str | None = None


class PlatformRollbacks(Protocol):
    def ecs_service(self, cluster: str, service: str) -> EcsServiceState: ...

    def codedeploy_deployment(self, deployment_id: str) -> CodeDeployState: ...


def _revision(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class EcsDeployments(aws.AwsAdapter):
    service = "ecs"

    def ecs_service(self, cluster: str, service: str) -> EcsServiceState:
        try:
            out = self.client.describe_services(cluster=cluster, services=[service])
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, f"describe ECS service {cluster}/{service}") from exc
        found = [s for s in out.get("services", []) if s.get("status") != "INACTIVE"]
        if not found:
            raise NotFoundError(f"ECS service {service!r} not found in cluster {cluster!r}")
        svc = found[0]
        breaker = (svc.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        return EcsServiceState(
            task_definition=_revision(str(svc.get("taskDefinition", ""))),
            circuit_breaker_rollback=bool(breaker.get("enable") and breaker.get("rollback")),
            deployments=tuple(
                (str(d.get("id", "")), _revision(str(d.get("taskDefinition", ""))), d.get("status"))
                for d in svc.get("deployments", [])
            ),
            running=int(svc.get("runningCount", 0)),
            desired=int(svc.get("desiredCount", 0)),
        )


class CodeDeployDeployments(aws.AwsAdapter):
    service = "codedeploy"

    def codedeploy_deployment(self, deployment_id: str) -> CodeDeployState:
        try:
            info = self.client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        except (ClientError, BotoCoreError) as exc:
            raise aws.translate(exc, f"read CodeDeploy deployment {deployment_id}") from exc
        auto = info.get("autoRollbackConfiguration") or {}
        rollback = info.get("rollbackInfo") or {}
        return CodeDeployState(
            deployment_id=deployment_id,
            status=str(info.get("status", "")),
            auto_rollback_enabled=bool(auto.get("enabled")),
            auto_rollback_events=frozenset(auto.get("events") or ()),
            rollback_deployment_id=rollback.get("rollbackDeploymentId"),
        )


class AwsPlatformRollbacks:
    """Both adapters behind one object (what the receiver's watch is given)."""

    def __init__(
        self, ecs: Any = None, codedeploy: Any = None, credentials_block: str | None = None
    ) -> None:
        self._ecs = EcsDeployments(ecs, credentials_block)
        self._codedeploy = CodeDeployDeployments(codedeploy, credentials_block)

    def ecs_service(self, cluster: str, service: str) -> EcsServiceState:
        return self._ecs.ecs_service(cluster, service)

    def codedeploy_deployment(self, deployment_id: str) -> CodeDeployState:
        return self._codedeploy.codedeploy_deployment(deployment_id)
