"""Notify stage: always a log line and a markdown artifact; Slack when configured.

A notification never changes the outcome: Slack is sent by its own stage (retried on
transient faults), and when it still fails the run says so in one warning line.
"""

from __future__ import annotations

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


@stage("notify", retries=0)
def notify(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> None:
    log = get_run_logger()
    log.info("%s (audit %s)", log_safe(outcome.headline), log_safe(outcome.audit_id))
    try:
        create_markdown_artifact(
            key=f"rollback-{_slug(outcome.environment)}-{_slug(outcome.service)}",
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


@stage("send-slack", retries=2)
def send_slack(notifier: Any, payload: dict[str, Any]) -> None:
    notifier.send(payload)


def _slug(text: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
