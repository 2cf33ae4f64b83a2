"""Pure mapping of "a deploy succeeded" events to the bake they start (verification):
a GitHub ``deployment_status`` with state ``success`` for a mapped repository and
environment. (ECS ``SERVICE_DEPLOYMENT_COMPLETED`` is mapped in ``aws_events``.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployments.events import match_rule
from rollback.config.webhooks import GithubWebhookConfig
from rollback.models import ROLLBACK_SOURCE_PREFIX


@dataclass(frozen=True)
class DeploySucceeded:
    environment: str
    service: str
    deployed_at: str  # ISO
    version: str | None
    key: str  # one bake per deploy (claim key)


def github_deployment_success(payload: Any, cfg: GithubWebhookConfig) -> DeploySucceeded | None:
    """The bake a successful GitHub deployment status asks for, or None."""
    if not isinstance(payload, Mapping):
        return None
    status, deployment = payload.get("deployment_status"), payload.get("deployment")
    if not isinstance(status, Mapping) or not isinstance(deployment, Mapping):
        return None
    if status.get("state") != "success":
        return None
    if deployment.get("task") == "rollback" or ROLLBACK_SOURCE_PREFIX in str(
        deployment.get("description") or ""
    ):
        return None  # our own rollback's deployment: nothing new to verify
    repo = payload.get("repository")
    full_name = str(repo.get("full_name") or "") if isinstance(repo, Mapping) else ""
    ref = str(deployment.get("ref") or "")
    environment = str(deployment.get("environment") or "")
    workflow = payload.get("workflow") or payload.get("workflow_run") or {}
    name = str(workflow.get("name") or "") if isinstance(workflow, Mapping) else ""
    path = str(workflow.get("path") or "") if isinstance(workflow, Mapping) else ""
    rule = match_rule(cfg.rules, full_name, name, path, ref, environment)
    deployment_id = deployment.get("id")
    at = status.get("created_at") or status.get("updated_at")
    if rule is None or not isinstance(deployment_id, int) or not isinstance(at, str):
        return None
    return DeploySucceeded(
        environment=rule.environment,
        service=rule.service,
        deployed_at=at,
        version=str(deployment.get("sha") or ref)[:100] or None,
        key=f"github:{full_name}/deployments/{deployment_id}#success",
    )
