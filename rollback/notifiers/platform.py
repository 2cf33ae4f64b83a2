"""Pure builders for what a notification says about a rollback the platform did itself
(ECS circuit breaker, CodeDeploy automatic rollback). Outside text is escaped."""

from __future__ import annotations

from typing import Any

from rollback.text import slack_escape as sl

PLATFORM_TRIGGERS = {"ecs": "ecs-circuit-breaker", "codedeploy": "codedeploy-auto-rollback"}
PLATFORM_NAMES = {"ecs": "ECS circuit breaker", "codedeploy": "CodeDeploy automatic rollback"}


def platform_text(
    platform: str,
    environment: str,
    service: str,
    failed: str,
    now: str | None,
    outcome: str,
) -> tuple[str, str]:
    """(subject, plain-text body) of a platform rollback's outcome:
    ``rolled_back`` or ``timeout`` (our own rollback was requested)."""
    who = PLATFORM_NAMES.get(platform, platform)
    if outcome == "rolled_back":
        subject = f"{who} rolled {environment}/{service} back: {failed} → {now or '?'}"
        body = (
            f"Deploy of {failed} failed; {who} rolled it back to {now or '?'}.\n"
            f"{failed} is marked bad and recorded in the history."
        )
    else:
        subject = f"{who} did not roll {environment}/{service} back in time"
        body = (
            f"Deploy of {failed} failed and {who} was expected to roll it back, but the "
            "service did not settle on another version in time: a rollback was requested."
        )
    return subject, body


def platform_slack(subject: str, body: str, channel: str) -> dict[str, Any]:
    return {
        "channel": channel,
        "text": f":arrows_counterclockwise: *{sl(subject)}*\n{sl(body)}",
        "unfurl_links": False,
        "unfurl_media": False,
    }
