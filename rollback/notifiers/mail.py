"""Pure builders for the e-mail of an outcome (SNS): a subject SNS accepts (printable
ASCII, one line, under 100 characters) and a plain-text body. Text from outside is made
one-line and control-free; e-mail is plain text, so nothing in it is a link but the
configured run URL."""

from __future__ import annotations

from rollback.models import RollbackOutcome

SUBJECT_MAX = 99


def one_line(text: str, limit: int = 500) -> str:
    """Outside text on one line, control characters replaced."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(cleaned.split())[:limit]


def subject_of(text: str) -> str:
    ascii_text = one_line(text).encode("ascii", "replace").decode("ascii")
    ascii_text = ascii_text.replace("\u2192", "->")
    return ascii_text[:SUBJECT_MAX] or "rollback"


def email_text(outcome: RollbackOutcome, run_url: str | None) -> tuple[str, str]:
    """(subject, body) of a rollback's outcome."""
    headline = outcome.headline or f"Rollback of {outcome.environment}/{outcome.service}"
    lines = [
        one_line(headline),
        "",
        f"Environment: {one_line(outcome.environment)}   Service: {one_line(outcome.service)}",
        f"Version: {one_line(outcome.from_version or '?')} -> {one_line(outcome.to_version or '?')}",
        f"Outcome: {one_line(outcome.status)}"
        + (f" ({one_line(outcome.reason)})" if outcome.reason else ""),
        f"Trigger: {one_line(outcome.trigger)}   Actor: {one_line(outcome.requested_by)}",
        f"Audit id: {one_line(outcome.audit_id)}",
    ]
    lines += evidence_lines(outcome)
    failed = [c for c in outcome.checks if not c.passed]
    if failed:
        lines.append(
            "Failed checks: " + "; ".join(f"{c.name}: {one_line(c.detail)}" for c in failed)
        )
    if outcome.status == "failed":
        lines.append("Escalation: the rollback did not complete - a human must take over.")
    if run_url:
        lines.append(f"Flow run: {run_url}")
    return subject_of(f"[{outcome.status}] {headline}"), "\n".join(lines) + "\n"


def evidence_lines(outcome: RollbackOutcome, limit: int = 2) -> list[str]:
    """A verification rollback's evidence, one metric a line (metric, baseline -> now,
    rule), from its request reason; else the reason as one line."""
    reason = one_line(outcome.request_reason or "")
    if outcome.trigger == "verification":
        head, metrics = verification_evidence(reason, limit)
        if metrics:
            return [f"Reason: {head}"] + [f"  {m.replace(chr(0x2192), '->')}" for m in metrics]
    return [f"Reason: {reason or '-'}"]


def verification_evidence(reason: str, limit: int = 2) -> tuple[str, list[str]]:
    """(headline, evidence per metric) of a verification rollback's reason, as the
    verify-deploy flow writes it: ``verification failed for V: <metric>; <metric>``."""
    head, sep, rest = reason.partition(": ")
    if not sep:
        return reason, []
    return head, [m.strip() for m in rest.split("; ") if m.strip()][:limit]
