"""Notify stage: always a log line and a markdown artifact; Slack when configured."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from rollback.models import RollbackOutcome
from rollback.notifiers.message import markdown_report, slack_payload
from rollback.runtime import Runtime
from tasks._common import stage


@stage("notify")
def notify(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> None:
    log = get_run_logger()
    log.info("%s (audit %s)", outcome.headline, outcome.audit_id)
    create_markdown_artifact(
        key=f"rollback-{_slug(outcome.environment)}-{_slug(outcome.service)}",
        markdown=markdown_report(outcome, run_url),
        description=outcome.headline,
    )
    notifier = rt.slack()
    slack_cfg = rt.config.notifications.slack
    if notifier and slack_cfg:
        channel = slack_cfg.channel_for(outcome.environment)
        notifier.send(slack_payload(outcome, channel, run_url))
        log.info("Slack notification sent to %s", channel)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())
