"""Pure mapping of AWS-native deployment events (EventBridge) to what they ask for.

- ECS ``ECS Deployment State Change`` / ``ECS Service Action`` with
  ``SERVICE_DEPLOYMENT_FAILED``: the service is found from ``resources[0]``
  (``arn:aws:ecs:<region>:<acct>:service/<cluster>/<service>``) among the configured ECS
  services. ``SERVICE_DEPLOYMENT_COMPLETED`` is a successful deploy (verification).
- CodeDeploy ``CodeDeploy Deployment State-change Notification`` with ``state``
  ``FAILURE`` or ``STOP``: found by ``application`` + ``deploymentGroup``.

No I/O: whether the platform rolls back by itself (ECS circuit breaker, CodeDeploy
automatic rollback) is decided by ``platform_rolls_back`` over what the adapter read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployments.events import Ignored
from rollback.config import Config
from rollback.platform_rollbacks import PlatformFailure, codedeploy_covers

__all__ = ["PlatformFailure", "codedeploy_covers"]

ECS_SOURCE = "aws.ecs"
ECS_DETAIL_TYPES = ("ECS Deployment State Change", "ECS Service Action")
CODEDEPLOY_SOURCE = "aws.codedeploy"
CODEDEPLOY_DETAIL_TYPE = "CodeDeploy Deployment State-change Notification"
CODEDEPLOY_FAILED_STATES = ("FAILURE", "STOP")


@dataclass(frozen=True)
class DeployCompleted:
    """A successful ECS deployment (``SERVICE_DEPLOYMENT_COMPLETED``): starts a bake."""

    environment: str
    service: str
    deployment_id: str
    event_id: str
    at: str


AwsMapped = PlatformFailure | DeployCompleted | Ignored


def is_aws_event(payload: Any) -> bool:
    """True for an EventBridge envelope (``source``, ``detail-type``, ``detail``)."""
    return (
        isinstance(payload, Mapping)
        and isinstance(payload.get("source"), str)
        and isinstance(payload.get("detail-type"), str)
        and isinstance(payload.get("detail"), Mapping)
    )


def ecs_service_of(arn: str) -> tuple[str, str] | None:
    """(cluster, service) of an ECS service ARN (new format), or None."""
    head, _, path = arn.partition(":service/")
    if not head.startswith("arn:aws") or ":ecs:" not in head:
        return None
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def find_ecs_service(config: Config, cluster: str, service: str) -> tuple[str, str] | None:
    """(environment, service name) of the configured ECS service, or None."""
    for env_name, env in config.environments.items():
        for name, svc in env.services.items():
            if getattr(svc, "type", None) != "ecs":
                continue
            configured = str(getattr(svc, "cluster", "")).rsplit("/", 1)[-1]
            if configured == cluster and getattr(svc, "service", None) == service:
                return env_name, name
    return None


def find_codedeploy_group(config: Config, application: str, group: str) -> tuple[str, str] | None:
    """(environment, service name) of the configured CodeDeploy group, or None."""
    for env_name, env in config.environments.items():
        for name, svc in env.services.items():
            if (
                getattr(svc, "type", None) == "codedeploy"
                and getattr(svc, "application", None) == application
                and getattr(svc, "deployment_group", None) == group
            ):
                return env_name, name
    return None


def aws_event(payload: Any, config: Config) -> AwsMapped:
    """What an EventBridge event asks for (the caller checked ``is_aws_event``)."""
    source, kind = payload.get("source"), payload.get("detail-type")
    if source == ECS_SOURCE and kind in ECS_DETAIL_TYPES:
        return _ecs(payload, config)
    if source == CODEDEPLOY_SOURCE and kind == CODEDEPLOY_DETAIL_TYPE:
        return _codedeploy(payload, config)
    return Ignored(f"EventBridge {str(source)[:60]!r} {str(kind)[:80]!r} is not acted on")


def _ecs(payload: Mapping[str, Any], config: Config) -> AwsMapped:
    detail = payload["detail"]
    name = str(detail.get("eventName") or "")
    if name not in ("SERVICE_DEPLOYMENT_FAILED", "SERVICE_DEPLOYMENT_COMPLETED"):
        return Ignored(f"ECS event {name[:60]!r} (acting on SERVICE_DEPLOYMENT_FAILED)")
    resources = payload.get("resources")
    arn = str(resources[0]) if isinstance(resources, list) and resources else ""
    where = ecs_service_of(arn)
    if where is None:
        return Ignored("ECS event without a service ARN in resources[0]")
    found = find_ecs_service(config, *where)
    if found is None:
        return Ignored(f"ECS service {where[0]}/{where[1]} is not configured")
    deployment = str(detail.get("deploymentId") or "")
    event_id = str(payload.get("id") or "")
    if not deployment and not event_id:
        return Ignored("ECS event without a deploymentId or an event id")
    if name == "SERVICE_DEPLOYMENT_COMPLETED":
        return DeployCompleted(*found, deployment, event_id, str(detail.get("updatedAt") or ""))
    # One failed deployment is one incident: the Deployment State Change and the
    # Service Action event about it (different event ids) share the deployment id.
    key = f"{where[0]}/{where[1]}/{deployment}" if deployment else event_id
    why = str(detail.get("reason") or "no reason given")
    return PlatformFailure(
        platform="ecs",
        environment=found[0],
        service=found[1],
        deployment_id=deployment,
        source_event_id=f"aws:ecs:{key}",
        reason=f"ECS deployment {deployment or '?'} of {where[0]}/{where[1]} failed: {why}",
        state=name,
    )


def _codedeploy(payload: Mapping[str, Any], config: Config) -> AwsMapped:
    detail = payload["detail"]
    state = str(detail.get("state") or "")
    if state not in CODEDEPLOY_FAILED_STATES:
        return Ignored(f"CodeDeploy state {state[:40]!r} (acting on FAILURE, STOP)")
    app, group = str(detail.get("application") or ""), str(detail.get("deploymentGroup") or "")
    found = find_codedeploy_group(config, app, group)
    if found is None:
        return Ignored(f"CodeDeploy group {app[:100]}/{group[:100]} is not configured")
    deployment = str(detail.get("deploymentId") or "")
    if not deployment:
        return Ignored("CodeDeploy event without a deploymentId")
    return PlatformFailure(
        platform="codedeploy",
        environment=found[0],
        service=found[1],
        deployment_id=deployment,
        source_event_id=f"aws:codedeploy:{deployment}",
        reason=f"CodeDeploy deployment {deployment} of {app}/{group} ended {state}",
        state=state,
    )
