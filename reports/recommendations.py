"""The summary's recommendations: explicit rules over a report's numbers, each stating
the threshold it crossed and naming what the data showed. Pure functions of the
deployment-stats document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reports.metrics import Report
from rollback.text import markdown_escape

CFR_THRESHOLD_PERCENT = 15.0
TTR_THRESHOLD_HOURS = 1.0
REPEATED_AUTO_ROLLBACKS = 2


@dataclass(frozen=True)
class Recommendation:
    rule: str  # the rule, stated so a reader sees why it fired
    finding: str  # what the data showed
    action: str


def recommendations(report: Report) -> list[Recommendation]:
    """Explicit rules over the report's numbers; each says which threshold it crossed."""
    return [found for rule in RULES for found in rule(report.document)]


def _change_failure_rate(doc: dict[str, Any]) -> list[Recommendation]:
    dora = doc["dora"]
    cfr = dora["changeFailureRatePercent"]
    if cfr is None or cfr <= CFR_THRESHOLD_PERCENT:
        return []
    return [
        Recommendation(
            f"change failure rate above {CFR_THRESHOLD_PERCENT:g}%",
            f"{dora['changeFailures']} of {doc['stats']['totalDeployments']} deployments "
            f"failed or were rolled back ({cfr:g}%).",
            "Review those changes and what pre-deploy checks could have caught them.",
        )
    ]


def _time_to_restore(doc: dict[str, Any]) -> list[Recommendation]:
    dora = doc["dora"]
    ttr = dora["timeToRestoreHoursMedian"]
    if ttr is None or ttr <= TTR_THRESHOLD_HOURS:
        return []
    return [
        Recommendation(
            f"median time to restore above {TTR_THRESHOLD_HOURS:g} hour",
            f"The median time to restore was {ttr:g} h over {dora['restoredCount']} "
            "restored failures.",
            "Make rollback faster to reach for: automatic triggers, or a runbook step.",
        )
    ]


def _unrestored_failures(doc: dict[str, Any]) -> list[Recommendation]:
    count = doc["dora"]["unrestoredCount"]
    if not count:
        return []
    named = "; ".join(
        f"{markdown_escape(u['service'])} `{markdown_escape(u['version'])}` since "
        f"{u['since']} ({u['openHours']:g} h open"
        + (
            f", audit {', '.join(markdown_escape(a) for a in u['auditIds'])}"
            if u["auditIds"]
            else ""
        )
        + ")"
        for u in doc.get("findings", {}).get("unrestored", [])
    )
    return [
        Recommendation(
            "failed deployment never restored",
            f"{count} failed or rolled-back deployment(s) have no later "
            f"successful record of their service: {named}.",
            "Check those services run a good version (roll back or deploy a fix), and "
            "record the fix in the history.",
        )
    ]


def _repeated_automatic_rollbacks(doc: dict[str, Any]) -> list[Recommendation]:
    return [
        Recommendation(
            f"{REPEATED_AUTO_ROLLBACKS} or more automatic rollbacks of one service",
            f"{markdown_escape(service)} was rolled back automatically "
            f"{numbers['automaticRollbacks']} times.",
            f"Find what keeps breaking {markdown_escape(service)}; its alarms may also "
            "be too sensitive.",
        )
        for service, numbers in doc["serviceDora"].items()
        if numbers["automaticRollbacks"] >= REPEATED_AUTO_ROLLBACKS
    ]


def _missing_commit_times(doc: dict[str, Any]) -> list[Recommendation]:
    missing = doc["dora"]["deploymentsWithoutCommitTime"]
    if not missing:
        return []
    known = doc["dora"]["leadTimeSampleSize"]
    return [
        Recommendation(
            "deployments without a recorded commit time",
            f"{missing} of {missing + known} successful deployments carry no "
            f"committed_at, so lead time "
            + ("is unknown." if not known else f"covers only {known} of them."),
            "Record the commit time in the deploy pipeline's history entry.",
        )
    ]


def _refused_rollbacks(doc: dict[str, Any]) -> list[Recommendation]:
    refused = doc["rollbacks"]["refused"]
    if not refused:
        return []
    named = "; ".join(
        f"audit {markdown_escape(r['auditId'])} ({markdown_escape(r['service'])}, "
        f"{r['requestedAt']}, check {markdown_escape(r['failedCheck'] or 'unknown')})"
        for r in doc.get("findings", {}).get("refused", [])
    )
    return [
        Recommendation(
            "rollback attempts refused",
            f"{refused} rollback attempt(s) were refused by safety checks: {named}.",
            "Read those audit records (`rollback audit ID`): a refusal can hide a "
            "service left on a bad version.",
        )
    ]


def _stale_services(doc: dict[str, Any]) -> list[Recommendation]:
    stale = doc.get("findings", {}).get("stale", [])
    if not stale:
        return []
    named = ", ".join(
        f"{markdown_escape(s['service'])} "
        + ("(no deploy in the history read)" if s["daysSinceDeploy"] is None
           else f"({s['daysSinceDeploy']:g} days)")
        for s in stale
    )  # fmt: skip
    return [
        Recommendation(
            f"no deploy for {doc['findings']['staleDays']} days",
            f"Stale services: {named}.",
            "Check they still run a supported version, or remove them from the config.",
        )
    ]


# The rules, in the order the summary lists what they found.
RULES: tuple[Callable[[dict[str, Any]], list[Recommendation]], ...] = (
    _change_failure_rate,
    _time_to_restore,
    _unrestored_failures,
    _repeated_automatic_rollbacks,
    _missing_commit_times,
    _refused_rollbacks,
    _stale_services,
)
