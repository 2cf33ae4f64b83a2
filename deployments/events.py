"""Pure mapping of incoming events to rollback requests — or to the reason they are
ignored. No I/O: GitHub, CloudWatch (alarm action, EventBridge) and SNS payloads in,
``RollbackRequest`` or ``Ignored`` out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollback.config import Config
from rollback.config.webhooks import AlarmRoute, GithubRule, GithubWebhookConfig
from rollback.models import ROLLBACK_SOURCE_PREFIX, RollbackRequest


@dataclass(frozen=True)
class Ignored:
    """The event is valid but asks for nothing; ``reason`` says why."""

    reason: str


Mapped = RollbackRequest | Ignored


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


# -- GitHub --------------------------------------------------------------------------------
def _workflow_matches(wanted: str, name: str, path: str) -> bool:
    wanted = wanted.strip().lower()
    base = path.rsplit("/", 1)[-1].lower()
    stem = base.rsplit(".", 1)[0]
    return wanted in {name.lower(), path.lower(), base, stem}


def _is_rollback_run(pattern: str, *texts: str) -> bool:
    rx = re.compile(pattern, re.IGNORECASE)
    return any(rx.search(t) for t in texts if t)


def match_rule(
    rules: list[GithubRule],
    repository: str,
    workflow_name: str,
    workflow_path: str,
    branch: str,
    github_environment: str | None = None,
) -> GithubRule | None:
    """The first rule for this repository whose optional fields all match."""
    for rule in rules:
        if rule.repository.lower() != repository.lower():
            continue
        if rule.workflow and not _workflow_matches(rule.workflow, workflow_name, workflow_path):
            continue
        if rule.branch and rule.branch != branch:
            continue
        if rule.github_environment and rule.github_environment != github_environment:
            continue
        return rule
    return None


def github_event(
    event: str | None, delivery: str | None, payload: Any, cfg: GithubWebhookConfig
) -> Mapped:
    """What a GitHub delivery asks for. ``delivery`` is the X-GitHub-Delivery id."""
    if not isinstance(payload, Mapping):
        return Ignored("payload is not a JSON object")
    if event == "workflow_run":
        return _workflow_run(payload, delivery, cfg)
    if event == "deployment_status":
        return _deployment_status(payload, delivery, cfg)
    if event == "ping":
        return Ignored("ping: the webhook is set up")
    return Ignored(f"event {event or '(none)'!r} is not handled (workflow_run, deployment_status)")


def _actor(payload: Mapping[str, Any], *paths: tuple[str, ...]) -> str:
    for path in paths:
        login = _get(payload, *path, "login")
        if login:
            return str(login)
    return "unknown"


def _workflow_run(
    payload: Mapping[str, Any], delivery: str | None, cfg: GithubWebhookConfig
) -> Mapped:
    run = payload.get("workflow_run")
    if not isinstance(run, Mapping):
        return Ignored("workflow_run payload without a workflow_run object")
    action = payload.get("action")
    if action != "completed":
        return Ignored(f"workflow_run action {action!r} (only 'completed' is acted on)")
    conclusion = run.get("conclusion")
    if conclusion not in cfg.conclusions:
        return Ignored(
            f"workflow run concluded {conclusion!r} (acting on {', '.join(cfg.conclusions)})"
        )
    repo = str(_get(payload, "repository", "full_name") or "")
    head_repo = str(_get(run, "head_repository", "full_name") or "")
    if not repo or head_repo.lower() != repo.lower():
        # A pull request from a fork runs the fork's workflow (and its failures) in our
        # repository's event stream: it never says anything about what we deployed.
        return Ignored(f"workflow run from another repository ({head_repo or 'unknown'!r})")
    run_event = run.get("event")
    if run_event not in cfg.events:
        return Ignored(
            f"workflow run triggered by {run_event!r} (acting on {', '.join(cfg.events)})"
        )
    run_id, attempt = run.get("id"), run.get("run_attempt")
    if not isinstance(run_id, int) or isinstance(run_id, bool):
        return Ignored("workflow run without a numeric id")
    name = str(run.get("name") or _get(payload, "workflow", "name") or "")
    path = str(run.get("path") or _get(payload, "workflow", "path") or "")
    title = str(run.get("display_title") or "")
    actor = _actor(
        payload, ("workflow_run", "triggering_actor"), ("workflow_run", "actor"), ("sender",)
    )
    # Loop prevention: a rollback workflow failing must not roll back again, and a run our
    # own GitHub Actions target dispatched carries our marker in its title.
    if _is_rollback_run(cfg.rollback_pattern, name, path):
        return Ignored(f"workflow {name or path!r} is a rollback workflow (loop prevention)")
    if ROLLBACK_SOURCE_PREFIX in title or actor in cfg.ignore_actors:
        return Ignored("the run was dispatched by a rollback (loop prevention)")
    branch = str(run.get("head_branch") or "")
    rule = match_rule(cfg.rules, repo, name, path, branch)
    if rule is None:
        return Ignored(f"no rule maps {repo} workflow {name or path!r} on {branch!r} to a service")
    # One failed run is one incident: its deliveries (redeliveries, and any other
    # delivery about the same run attempt) share the source event id.
    attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1
    incident = f"{repo}/actions/runs/{run_id}/attempts/{attempt}"
    return RollbackRequest(
        environment=rule.environment,
        service=rule.service,
        reason=(
            f"GitHub workflow {name or path!r} run {run.get('id')} in {repo} concluded "
            f"{conclusion} on {branch} ({run.get('html_url') or 'no url'})"
        )[:500],
        requested_by=f"github:{actor}",
        trigger="webhook",
        source_event_id=f"github:{incident}",
    )


def _deployment_status(
    payload: Mapping[str, Any], delivery: str | None, cfg: GithubWebhookConfig
) -> Mapped:
    status = payload.get("deployment_status")
    deployment = payload.get("deployment")
    if not isinstance(status, Mapping) or not isinstance(deployment, Mapping):
        return Ignored("deployment_status payload without deployment_status/deployment")
    state = status.get("state")
    if state not in cfg.deployment_states:
        return Ignored(f"deployment state {state!r} (acting on {', '.join(cfg.deployment_states)})")
    name = str(_get(payload, "workflow", "name") or _get(payload, "workflow_run", "name") or "")
    path = str(_get(payload, "workflow", "path") or _get(payload, "workflow_run", "path") or "")
    task = str(deployment.get("task") or "")
    if _is_rollback_run(cfg.rollback_pattern, name, path, task):
        return Ignored(f"deployment {task or name!r} is a rollback (loop prevention)")
    actor = _actor(payload, ("deployment", "creator"), ("sender",))
    if actor in cfg.ignore_actors or ROLLBACK_SOURCE_PREFIX in str(
        deployment.get("description") or ""
    ):
        return Ignored("the deployment was made by a rollback (loop prevention)")
    repo = str(_get(payload, "repository", "full_name") or "")
    ref = str(deployment.get("ref") or "")
    gh_env = str(deployment.get("environment") or "")
    # A rule naming a workflow only matches payloads that name one too.
    rule = match_rule(cfg.rules, repo, name, path, ref, gh_env)
    if rule is None:
        return Ignored(f"no rule maps {repo} deployment to {gh_env!r} (ref {ref!r}) to a service")
    # Deduplicated on the signed payload's status id, never on the unsigned delivery
    # header: a replay under a new X-GitHub-Delivery is the same incident.
    status_id = status.get("id")
    if not isinstance(status_id, int) or isinstance(status_id, bool):
        return Ignored("deployment_status without a numeric deployment_status.id")
    return RollbackRequest(
        environment=rule.environment,
        service=rule.service,
        reason=(
            f"GitHub deployment {deployment.get('id')} of {repo}@{ref} to {gh_env} reported {state}"
        )[:500],
        requested_by=f"github:{actor}",
        trigger="webhook",
        source_event_id=f"github:{repo}/deployment_statuses/{status_id}",
    )


# -- CloudWatch alarms -----------------------------------------------------------------------
@dataclass(frozen=True)
class AlarmChange:
    """One alarm state change, whatever shape it arrived in."""

    name: str
    arn: str | None
    new_state: str
    old_state: str | None
    event_id: str
    reason: str
    shape: str


def alarm_change(payload: Any) -> AlarmChange | None:
    """Parse the alarm-action, EventBridge or SNS-message (CloudWatch alarm JSON) shape;
    None when the payload is none of them."""
    if not isinstance(payload, Mapping):
        return None
    if payload.get("detail-type") == "CloudWatch Alarm State Change":
        detail = payload.get("detail") or {}
        resources = payload.get("resources") or []
        arn = str(resources[0]) if isinstance(resources, list) and resources else None
        return AlarmChange(
            name=str(_get(detail, "alarmName") or ""),
            arn=arn,
            new_state=str(_get(detail, "state", "value") or ""),
            old_state=_get(detail, "previousState", "value"),
            event_id=str(payload.get("id") or f"{arn}@{_get(detail, 'state', 'timestamp')}"),
            reason=str(_get(detail, "state", "reason") or ""),
            shape="eventbridge",
        )
    if isinstance(payload.get("alarmData"), Mapping):
        data = payload["alarmData"]
        arn = payload.get("alarmArn")
        stamp = _get(data, "state", "timestamp") or payload.get("time")
        return AlarmChange(
            name=str(data.get("alarmName") or ""),
            arn=str(arn) if arn else None,
            new_state=str(_get(data, "state", "value") or ""),
            old_state=_get(data, "previousState", "value"),
            event_id=f"{arn or data.get('alarmName')}@{stamp}",
            reason=str(_get(data, "state", "reason") or ""),
            shape="alarm-action",
        )
    if "AlarmName" in payload and "NewStateValue" in payload:
        arn = payload.get("AlarmArn")
        return AlarmChange(
            name=str(payload["AlarmName"]),
            arn=str(arn) if arn else None,
            new_state=str(payload["NewStateValue"]),
            old_state=payload.get("OldStateValue"),
            event_id=f"{arn or payload['AlarmName']}@{payload.get('StateChangeTime')}",
            reason=str(payload.get("NewStateReason") or ""),
            shape="sns",
        )
    return None


def route_alarm(alarms: Mapping[str, AlarmRoute], change: AlarmChange) -> AlarmRoute | None:
    """The route configured for the alarm, by ARN first, then by name."""
    if change.arn and change.arn in alarms:
        return alarms[change.arn]
    return alarms.get(change.name)


def alarm_request(
    alarms: Mapping[str, AlarmRoute], change: AlarmChange, event_id: str | None = None
) -> Mapped:
    """Only a transition *into* ALARM of a mapped alarm asks for a rollback."""
    if change.new_state != "ALARM":
        return Ignored(f"alarm {change.name!r} went to {change.new_state} (only ALARM acts)")
    if change.old_state == "ALARM":
        return Ignored(f"alarm {change.name!r} was already in ALARM")
    route = route_alarm(alarms, change)
    if route is None:
        return Ignored(f"alarm {change.name!r} is not mapped to a service")
    source = event_id or change.event_id
    return RollbackRequest(
        environment=route.environment,
        service=route.service,
        reason=f"CloudWatch alarm {change.name!r} in ALARM: {change.reason}"[:500],
        requested_by=f"cloudwatch:{change.name}"[:200],
        trigger="alarm",
        source_event_id=f"cloudwatch:{source}",
    )


def sns_alarm_payload(message: Mapping[str, Any]) -> Any:
    """The CloudWatch alarm JSON inside an SNS Notification's ``Message`` (or None)."""
    try:
        return json.loads(str(message.get("Message") or ""))
    except ValueError:
        return None


# -- config cross-checks ----------------------------------------------------------------------
def route_errors(config: Config) -> list[str]:
    """Rules, alarms and health checks that name an unknown environment/service."""
    targets: list[tuple[str, str, str]] = []
    github = config.webhooks.github if config.webhooks else None
    for i, rule in enumerate(github.rules if github else []):
        targets.append((f"webhooks.github.rules[{i}]", rule.environment, rule.service))
    for name, route in config.alarms.items():
        targets.append((f"alarms[{name!r}]", route.environment, route.service))
    guard = config.health_guard
    for i, check in enumerate(guard.services if guard else []):
        targets.append((f"health_guard.services[{i}]", check.environment, check.service))
    errors = []
    for where, env, service in targets:
        if service not in config.environments.get(env, _NoServices).services:
            errors.append(f"{where}: unknown environment/service {env}/{service}")
    return errors


class _NoServices:
    services: dict[str, Any] = {}
