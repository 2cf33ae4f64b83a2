"""Pure builders for what a notification says (Slack payload, markdown artifact).

Every field but the status words and the configured flow-run URL can come from outside
(a webhook payload, a ``--reason``, a version name): each is escaped for where it is
shown (``rollback.text``), so none can mention a channel, form a link or an image, or
forge another line.
"""

from __future__ import annotations

from typing import Any

from rollback.models import RollbackOutcome
from rollback.notifiers.mail import verification_evidence
from rollback.text import markdown_escape as md
from rollback.text import slack_escape as sl

_ICON = {"succeeded": ":white_check_mark:", "failed": ":rotating_light:", "refused": ":no_entry:"}


def slack_payload(outcome: RollbackOutcome, channel: str, run_url: str | None) -> dict[str, Any]:
    failed_checks = [c for c in outcome.checks if not c.passed]
    lines = [
        f"{_ICON.get(outcome.status, ':information_source:')} *{sl(outcome.headline)}*",
        f"*Environment:* {sl(outcome.environment)}   *Service:* {sl(outcome.service)}",
        f"*Version:* {sl(outcome.from_version or '?')} → {sl(outcome.to_version or '?')}",
        f"*Reason:* {sl(outcome.request_reason or '-')}   *Trigger:* {sl(outcome.trigger)}",
        f"*Actor:* {sl(outcome.requested_by)}   *Outcome:* {sl(outcome.status)}"
        + (f"   *Duration:* {outcome.duration_s:.1f}s" if outcome.duration_s is not None else ""),
        f"*Audit id:* {sl(outcome.audit_id)}",
    ]
    if outcome.reason:
        lines.append(f"*Why:* {sl(outcome.reason)}")
    if outcome.trigger == "verification":  # the evidence, one metric a line
        _, evidence = verification_evidence(outcome.request_reason)
        lines += [f"*Evidence:* {sl(line)}" for line in evidence]
    if failed_checks:
        lines.append(
            "*Failed checks:* " + "; ".join(f"{c.name}: {sl(c.detail)}" for c in failed_checks)
        )
    if outcome.status == "failed":
        lines.append("*Escalation:* the rollback did not complete — a human must take over.")
    if run_url:  # from the config, not from outside: the one link of the message
        lines.append(f"<{run_url}|Flow run>")
    # No previews: Slack must not fetch anything a message names.
    return {
        "channel": channel,
        "text": "\n".join(lines),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def markdown_report(outcome: RollbackOutcome, run_url: str | None) -> str:
    rows = "\n".join(
        # Check names are ours (rollback.decisions); their details quote outside text.
        f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {md(c.detail)} |"
        for c in outcome.checks
    )
    timeline = "\n".join(f"- {md(at)} {md(event)}" for at, event in outcome.timeline)
    return (
        f"# {md(outcome.headline)}\n\n"
        f"- **Environment / service:** {md(outcome.environment)} / {md(outcome.service)}\n"
        f"- **From → to:** {md(outcome.from_version or '?')} → {md(outcome.to_version or '?')}\n"
        f"- **Status:** {md(outcome.status)}"
        + (f" — {md(outcome.reason)}" if outcome.reason else "")
        + "\n"
        f"- **Trigger / actor:** {md(outcome.trigger)} / {md(outcome.requested_by)}\n"
        f"- **Reason:** {md(outcome.request_reason or '-')}\n"
        f"- **Audit id:** {md(outcome.audit_id)}\n"
        + (f"- **Flow run:** [open in the Prefect UI]({_link(run_url)})\n" if run_url else "")
        + "\n## Checks\n\n| check | result | detail |\n|---|---|---|\n"
        + rows
        + "\n\n## Timeline\n\n"
        + timeline
        + "\n"
    )


def _link(url: str) -> str:
    """A link target from the config (never from outside), safe inside ``(...)``."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C")
