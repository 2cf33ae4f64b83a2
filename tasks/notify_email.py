"""E-mail of an outcome through SNS (``notifications.sns``): one Publish to the
environment's topic, retried on transient faults; a failure is a warning, never a
changed outcome."""

from __future__ import annotations

from prefect import get_run_logger

from rollback.errors import RollbackError
from rollback.models import RollbackOutcome
from rollback.notifiers.mail import email_text
from rollback.notifiers.sns import SnsPublisher
from rollback.runtime import Runtime
from rollback.text import log_safe
from tasks._common import stage


def sns_publisher(rt: Runtime) -> SnsPublisher:
    return rt.sns()


@stage("send-email", retries=2)
def publish_email(publisher: SnsPublisher, topic_arn: str, subject: str, body: str) -> str:
    return publisher.publish(topic_arn, subject, body)


def email_outcome(rt: Runtime, outcome: RollbackOutcome, run_url: str | None) -> None:
    cfg = rt.config.notifications.sns
    topic = cfg.topic_for(outcome.environment) if cfg else None
    if not topic:
        return
    log = get_run_logger()
    subject, body = email_text(outcome, run_url)
    try:
        message_id = publish_email(sns_publisher(rt), topic, subject, body)
    except RollbackError as exc:
        log.warning("e-mail to %s not sent: %s", log_safe(topic), log_safe(exc))
    else:
        log.info("e-mail sent to %s (SNS message %s)", log_safe(topic), message_id)
