"""Pure builders for what a notification says (Slack payload, markdown artifact)."""

from __future__ import annotations

from typing import Any

from rollback.models import RollbackOutcome

_ICON = {"succeeded": ":white_check_mark:", "failed": ":rotating_light:", "refused": ":no_entry:"}


def slack_payload(outcome: RollbackOutcome, channel: str, run_url: str | None) -> dict[str, Any]:
    failed_checks = [c for c in outcome.checks if not c.passed]
    lines = [
        f"{_ICON.get(outcome.status, ':information_source:')} *{outcome.headline}*",
        f"*Environment:* {outcome.environment}   *Service:* {outcome.service}",
        f"*Version:* {outcome.from_version or '?'} → {outcome.to_version or '?'}",
        f"*Reason:* {outcome.request_reason or '-'}   *Trigger:* {outcome.trigger}",
        f"*Actor:* {outcome.requested_by}   *Outcome:* {outcome.status}"
        + (f"   *Duration:* {outcome.duration_s:.1f}s" if outcome.duration_s is not None else ""),
        f"*Audit id:* {outcome.audit_id}",
    ]
    if outcome.reason:
        lines.append(f"*Why:* {outcome.reason}")
    if failed_checks:
        lines.append(
            "*Failed checks:* " + "; ".join(f"{c.name}: {c.detail}" for c in failed_checks)
        )
    if outcome.status == "failed":
        lines.append("*Escalation:* the rollback did not complete — a human must take over.")
    if run_url:
        lines.append(f"<{run_url}|Flow run>")
    return {"channel": channel, "text": "\n".join(lines)}


def markdown_report(outcome: RollbackOutcome, run_url: str | None) -> str:
    rows = "\n".join(
        f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail.replace('|', '/')} |"
        for c in outcome.checks
    )
    timeline = "\n".join(f"- `{at}` {event}" for at, event in outcome.timeline)
    return (
        f"# {outcome.headline}\n\n"
        f"- **Environment / service:** {outcome.environment} / {outcome.service}\n"
        f"- **From → to:** {outcome.from_version or '?'} → {outcome.to_version or '?'}\n"
        f"- **Status:** {outcome.status}"
        + (f" — {outcome.reason}" if outcome.reason else "")
        + "\n"
        f"- **Trigger / actor:** {outcome.trigger} / {outcome.requested_by}\n"
        f"- **Reason:** {outcome.request_reason or '-'}\n"
        f"- **Audit id:** `{outcome.audit_id}`\n"
        + (f"- **Flow run:** {run_url}\n" if run_url else "")
        + "\n## Checks\n\n| check | result | detail |\n|---|---|---|\n"
        + rows
        + "\n\n## Timeline\n\n"
        + timeline
        + "\n"
    )
