"""Notify stage: always a log line and a markdown artifact; Slack when configured.

A notification never changes the outcome: Slack is sent by its own stage (retried on
transient faults), and when it still fails the run says so in one warning line.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from rollback.errors import RollbackError
from rollback.models import RollbackOutcome
from rollback.notifiers.message import markdown_report, slack_payload
from rollback.runtime import Runtime
from rollback.text import log_safe, markdown_escape
from tasks._common import stage
from tasks.notify_email import email_outcome
from tasks.notify_github import github_outcome


@stage("notify", retries=0)
def notify(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> None:
    log = get_run_logger()
    log.info("%s (audit %s)", log_safe(outcome.headline), log_safe(outcome.audit_id))
    try:
        create_markdown_artifact(
            key=artifact_key(outcome.audit_id),
            markdown=markdown_report(outcome, run_url),
            description=markdown_escape(outcome.headline),
        )
    except Exception as exc:  # noqa: BLE001 - a lost artifact never changes the outcome
        log.warning("markdown artifact not created: %s", log_safe(exc))
    notifier = rt.slack()
    slack_cfg = rt.config.notifications.slack
    if notifier and slack_cfg:
        channel = slack_cfg.channel_for(outcome.environment)
        try:
            send_slack(notifier, slack_payload(outcome, channel, run_url))
        except RollbackError as exc:
            log.warning("Slack notification to %s not sent: %s", channel, log_safe(exc))
        else:
            log.info("Slack notification sent to %s", channel)
    email_outcome(rt, outcome, run_url)  # SNS e-mail when notifications.sns is set
    github_outcome(rt, outcome, run_url)  # when notifications.github_deployments is set


@stage("send-slack", retries=2)
def send_slack(notifier: Any, payload: dict[str, Any]) -> None:
    notifier.send(payload)


def artifact_key(audit_id: str) -> str:
    """One artifact per run (its audit id): a later run never overwrites what an earlier
    one showed; the plan shown while paused and the outcome are versions of it."""
    return f"rollback-{_slug(audit_id)}"


def show_plan(outcome: RollbackOutcome, run_url: str | None, waiting: str) -> None:
    """The plan as the run's artifact while it waits for a person (best effort)."""
    shown = copy.copy(outcome)
    shown.headline = f"Waiting for confirmation: {outcome.environment}/{outcome.service}"
    shown.status = "awaiting confirmation"
    title, rest = markdown_report(shown, run_url).split("\n\n", 1)
    try:
        create_markdown_artifact(
            key=artifact_key(outcome.audit_id),
            markdown=title + f"\n\n**{markdown_escape(waiting)}**\n\n" + rest,
            description=markdown_escape(waiting),
        )
    except Exception as exc:  # noqa: BLE001 - the log lines and the state say it too
        get_run_logger().warning("plan artifact not created: %s", log_safe(exc))


def _slug(text: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
