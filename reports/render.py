"""Renderers: file names, the JSON files and the markdown summary.

Pure functions of a computed ``Report``; the summary's rules are in
``reports.recommendations``, the chart is in ``reports.chart``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from reports.metrics import Report
from reports.recommendations import recommendations
from rollback.text import markdown_escape

EVENTS_SHOWN = 20


@dataclass(frozen=True)
class FileNames:
    """``{kind}-{environment}-{days}d-{UTC timestamp}``: the window's length is in the
    name, so a daily and a weekly report written in the same second both stay."""

    stats: str
    metrics: str
    summary: str
    chart: str

    @classmethod
    def of(cls, environment: str, days: int, generated_at: pd.Timestamp) -> FileNames:
        stamp = generated_at.tz_convert("UTC").strftime("%Y%m%d-%H%M%S")
        tail = f"{environment}-{days}d-{stamp}"
        return cls(
            stats=f"deployment-stats-{tail}.json",
            metrics=f"cloudwatch-metrics-{tail}.json",
            summary=f"deployment-summary-{tail}.md",
            chart=f"deployment-chart-{tail}.png",
        )


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _num(value: Any, unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}"


def _delta(now: Any, before: Any, unit: str = "") -> str:
    if now is None or before is None:
        return "—"
    change = round(now - before, 2)
    return f"{change:+g}{unit}" if change else "no change"


def _headline(doc: dict[str, Any]) -> list[str]:
    cur, prev = doc, doc["previousPeriod"]
    rows = [
        ("Deployments", "stats", "totalDeployments", ""),
        ("Success rate", "stats", "successRate", "%"),
        ("Change failure rate", "dora", "changeFailureRatePercent", "%"),
        ("Deploys per day", "dora", "deploymentFrequencyPerDay", ""),
        ("Lead time (median)", "dora", "leadTimeHoursMedian", " h"),
        ("Time to restore (median)", "dora", "timeToRestoreHoursMedian", " h"),
        ("Average duration", "stats", "averageDuration", " s"),
    ]
    lines = ["| | This period | Previous period | Change |", "|---|---:|---:|---:|"]
    for label, part, key, unit in rows:
        a, b = cur[part][key], prev[part][key]
        delta_unit = " pts" if unit == "%" else unit
        lines.append(
            f"| {label} | {_num(a, unit)} | {_num(b, unit)} | {_delta(a, b, delta_unit)} |"
        )
    return lines


def _services(report: Report) -> list[str]:
    if not report.services:
        return ["No deployments or rollbacks in the window."]
    lines = [
        "| Service | Deploys | Succeeded | Failed | Success rate | Duration mean / median / "
        "p90 | Change failure rate | Rollbacks | Time to restore median / p90 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pct = report.document.get("servicePercentiles", {})
    for r in report.services:
        p = pct.get(r["service"], {})
        lines.append(
            f"| {_text(r['service'])} | {r['totalDeployments']} | {r['successfulDeployments']} | "
            f"{r['failedDeployments']} | {_num(r['successRate'], '%')} | "
            f"{_num(r['averageDuration'], ' s')} / {_num(p.get('durationSecondsMedian'), ' s')}"
            f" / {_num(p.get('durationSecondsP90'), ' s')} | "
            f"{_num(r['changeFailureRatePercent'], '%')} | {r['rollbacks']} | "
            f"{_num(r['timeToRestoreHoursMedian'], ' h')} / "
            f"{_num(p.get('timeToRestoreHoursP90'), ' h')} |"
        )
    return lines


def _text(value: Any) -> str:
    """A value from the history or audit log (outside text), escaped for markdown."""
    return "—" if value is None or pd.isna(value) else markdown_escape(value)


def _rollbacks(report: Report) -> list[str]:
    rb = report.document["rollbacks"]
    lines = [
        f"Audit log: {rb['count']} attempt(s) — {rb['succeeded']} succeeded, {rb['failed']} "
        f"failed, {rb['refused']} refused, {rb['interrupted']} interrupted; median duration "
        f"{_num(rb['durationSecondsMedian'], ' s')}.",
        "",
    ]
    events = report.events
    if events.empty:
        return [*lines, "No rollback recorded in the history for this window."]
    shown = events.tail(EVENTS_SHOWN).iloc[::-1]
    lines += [
        "| When (UTC) | Service | From → to | Trigger | Outcome | Time to restore |",
        "|---|---|---|---|---|---:|",
    ]
    for e in shown.itertuples(index=False):
        restore = None if pd.isna(e.restore_h) else round(float(e.restore_h), 2)
        lines.append(
            f"| {e.finished_at:%Y-%m-%d %H:%M} | {_text(e.service)} | "
            f"{_text(e.from_version)} → {_text(e.to_version)} | {_text(e.trigger)} | "
            f"{_text(e.status)} | {_num(restore, ' h')} |"
        )
    if len(events) > EVENTS_SHOWN:
        lines.append(
            f"\n…and {len(events) - EVENTS_SHOWN} earlier rollback(s): every one, with its "
            "record id, is in `events` of the deployment-stats JSON."
        )
    return lines


def summary_markdown(
    report: Report,
    chart_name: str | None,
    timezone: str = "UTC",
    metrics: dict[str, Any] | None = None,
) -> str:
    """The one-minute read: headline against the previous period, recommendations,
    services, rollbacks, definitions."""
    doc, w = report.document, report.window
    local = ""
    if timezone != "UTC":
        end = w.end.tz_convert(ZoneInfo(timezone))
        local = f" ({end:%Y-%m-%d %H:%M} {timezone})"
    lines = [
        f"# Deployment summary — {markdown_escape(report.environment)}",
        "",
        f"Window: {w.start:%Y-%m-%d %H:%M} → {w.end:%Y-%m-%d %H:%M} UTC ({w.days} days), "
        f"generated {doc['generatedAt']}{local}. Changes compare with the {w.days} days before.",
        "",
        "## Headline",
        "",
        *[f"> **Warning:** {w}" for w in doc.get("warnings", [])],
        *([""] if doc.get("warnings") else []),
        *_headline(doc),
        "",
    ]
    if chart_name:
        lines += [f"![Deploys per day by outcome, rollbacks marked]({chart_name})", ""]
    lines += ["## Recommendations", ""]
    recs = recommendations(report)
    lines += [f"- **Rule: {r.rule}.** {r.finding} {r.action}" for r in recs] or [
        "No rule fired (change failure rate, time to restore, unrestored failures, repeated "
        "automatic rollbacks, missing commit times, refused rollbacks)."
    ]
    lines += ["", "## Needs attention", "", *_attention(doc), ""]
    lines += ["## DORA performance bands", "", *_bands(doc), ""]
    lines += ["## Weekly trends", "", *_weekly(doc), ""]
    lines += ["## CloudWatch", "", *_cloudwatch(metrics), ""]
    lines += ["## Services", "", *_services(report), ""]
    lines += ["## Rollbacks in the window", "", *_rollbacks(report), ""]
    lines += ["## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in doc["definitions"].items()]
    return "\n".join(lines) + "\n"


def _attention(doc: dict[str, Any]) -> list[str]:
    f = doc.get("findings", {})
    lines = []
    for u in f.get("unrestored", []):
        audits = ", ".join(markdown_escape(a) for a in u["auditIds"]) or "none"
        lines.append(
            f"- **Unrestored:** {markdown_escape(u['service'])} `{markdown_escape(u['version'])}` "
            f"failed {u['since']}, open {u['openHours']:g} h (record "
            f"{markdown_escape(u['recordId'])}; rollback attempts since: {audits})."
        )
    for w in f.get("worstChangeFailure", []):
        lines.append(
            f"- **Highest change failure rate:** {markdown_escape(w['service'])} "
            f"{w['changeFailureRatePercent']:g}% ({w['changeFailures']} failure(s))."
        )
    for w in f.get("slowestRestore", []):
        lines.append(
            f"- **Slowest restore:** {markdown_escape(w['service'])} median "
            f"{w['timeToRestoreHoursMedian']:g} h."
        )
    for r in f.get("refused", []):
        lines.append(
            f"- **Refused:** audit {markdown_escape(r['auditId'])}, "
            f"{markdown_escape(r['service'])} at {r['requestedAt']} "
            f"({markdown_escape(r['trigger'])}), check "
            f"{markdown_escape(r['failedCheck'] or 'unknown')}."
        )
    for s in f.get("stale", []):
        since = "no deploy in the history read" if s["lastDeploy"] is None else (
            f"last deploy {s['lastDeploy']}, {s['daysSinceDeploy']:g} days ago")  # fmt: skip
        lines.append(f"- **Stale:** {markdown_escape(s['service'])}: {since}.")
    by = f.get("restoredBy")
    if by:
        lines.append(
            f"- **Restored by:** fix-forward {by['fixForward']['count']} (median "
            f"{_num(by['fixForward']['hoursMedian'], ' h')}), rollback "
            f"{by['rollback']['count']} (median {_num(by['rollback']['hoursMedian'], ' h')})."
        )
    return lines or ["Nothing: no unrestored failure, refusal or stale service."]


def _bands(doc: dict[str, Any]) -> list[str]:
    bands = doc.get("doraBands")
    if not bands:
        return []
    lines = [
        f"Bands and thresholds from the {bands['source']}.",
        "",
        "| Key | Value | Band | Thresholds |",
        "|---|---:|---|---|",
    ]
    for key, b in bands["keys"].items():
        limits = "; ".join(f"{t['band']}: {t['text']}" for t in b["thresholds"])
        lines.append(f"| {key} | {_num(b['value'])} | {b['band'] or '—'} | {limits} |")
    return lines


def _weekly(doc: dict[str, Any]) -> list[str]:
    weeks = doc.get("weeklyTrends", [])
    lines = [
        "| Week ending (UTC) | Deploys | Deploys/day | Change failure rate | Lead time median "
        "| Time to restore median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w in weeks:
        lines.append(
            f"| {w['to'][:10]} | {w['deployments']} | {w['deploymentFrequencyPerDay']:g} | "
            f"{_num(w['changeFailureRatePercent'], '%')} | "
            f"{_num(w['leadTimeHoursMedian'], ' h')} | {_num(w['timeToRestoreHoursMedian'], ' h')} |"
        )
    return lines


def _cloudwatch(metrics: dict[str, Any] | None) -> list[str]:
    if metrics is None:
        return ["Not read for this summary."]
    rates = metrics.get("errorRates", [])
    if not metrics.get("services"):
        return [
            f"No CloudWatch metrics are configured for {markdown_escape(metrics['environment'])}"
            " (reports.metrics in the config): error rates are not checked."
        ]
    lines = []
    for r in rates:
        head = (
            f"- {markdown_escape(r['service'])} {markdown_escape(r['rate'])}: "
            f"{_num(r['overallPercent'], '%')} over the window (threshold "
            f"{r['thresholdPercent']:g}%), {len(r['breaches'])} hour(s) above"
        )
        lines.append(head + ("." if not r["breaches"] else ":"))
        for b in r["breaches"][:5]:
            near = ", ".join(
                f"{markdown_escape(d['version'])} ({d['finishedAt']})" for d in b["deploysNear"]
            )
            lines.append(
                f"  - {b['hour']}: {b['percent']:g}%" + (f"; deploys near: {near}" if near else "")
            )
    if not rates:
        lines.append(
            "Metrics are configured, but no error-rate pair (Errors with Invocations, "
            "5XXError with Count, HTTPCode_Target_5XX_Count with RequestCount)."
        )
    return lines


def service_table(report: Report) -> list[dict[str, Any]]:
    """The per-service rows of the Prefect table artifact."""
    return [dict(r) for r in report.services]
