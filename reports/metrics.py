"""Every number of the deployment report, as pure functions over DataFrames.

Input frames have the columns of ``reports.load`` (times are UTC ``datetime64``). The
definitions the numbers follow are in ``DEFINITIONS`` and are written into every report.

Records are ordered by ``finished_at``, then deploys before rollbacks, then
``record_id``: a total order, so the result never depends on the order rows arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from reports.timeline import timeline
from rollback.models import AUTOMATIC_TRIGGERS

TRIGGERS = ("manual", "webhook", "alarm", "health")
AUDIT_OUTCOMES = ("succeeded", "failed", "refused", "interrupted")

DEFINITIONS: dict[str, str] = {
    "window": "All counts are over [now - days, now) by finished_at, for the environment; "
    "records without finished_at are not counted. Rollback and restore links use the "
    "whole history before now.",
    "deployment": "A history record of kind 'deploy'. Rollbacks are not deployments.",
    "successRate": "successful / total deployments x 100, 2 decimals; null when there are "
    "no deployments.",
    "averageDuration": "Mean of finished_at - started_at in seconds, 1 decimal, over the "
    "deployments that record started_at.",
    "deploymentFrequency": "Successful deployments / days of the window, 3 decimals.",
    "leadTime": "finished_at - committed_at in hours (median and p90) over successful "
    "deployments that carry committed_at; null when none does. leadTimeSampleSize says "
    "how many did.",
    "changeFailureRate": "Deployments that failed, or that succeeded but were rolled back "
    "(a rollback record of the same service whose from_version is the deployment's "
    "version, before the next deployment of that service) / total deployments x 100. "
    "Rollbacks are not in the denominator.",
    "timeToRestore": "For each failed or rolled-back deployment: from its finished_at to "
    "the finished_at of the next successful record (rollback or deploy) of the same "
    "service, in hours (median and p90). Deployments not yet restored are counted in "
    "unrestoredCount, not dropped.",
    "rollbacks": "Rollback attempts from the audit log that reached a final outcome in the "
    "window (dry runs excluded): counts by outcome and trigger; duration is requested -> "
    "final status in seconds over attempts that were not refused. Time to restore by "
    "trigger groups the failed deployments of the window by what restored them (the "
    "rollback's trigger, or 'deploy' for a fix-forward).",
    "percentiles": "Median and p90 interpolate linearly between the closest ranks.",
    "events": "Failed or rolled-back deployments and rollbacks of the window, with their "
    "record ids (for a rollback, the audit id), so every number can be traced to records.",
    "findings": "unrestored: failures with no later successful record, open hours to now; "
    "stale: services with no deploy for staleDays; worst: the services with the highest "
    "change failure rate / slowest median restore (with at least one failure).",
    "doraBands": "Each key's band, with the thresholds and the report they come from.",
    "weeklyTrends": "The keys per 7-day period counted back from the end of the window.",
}


@dataclass(frozen=True)
class Window:
    """The half-open interval ``[start, end)`` of a report."""

    start: pd.Timestamp
    end: pd.Timestamp
    days: int

    @classmethod
    def ending(cls, now: datetime | pd.Timestamp, days: int) -> Window:
        end = utc_timestamp(now)
        return cls(end - timedelta(days=days), end, days)

    def previous(self) -> Window:
        """The period of the same length just before this one."""
        return Window(self.start - timedelta(days=self.days), self.start, self.days)

    def mask(self, times: pd.Series) -> pd.Series:
        return (times >= self.start) & (times < self.end)

    def as_dict(self) -> dict[str, Any]:
        return {"from": iso_z(self.start), "to": iso_z(self.end), "days": self.days}


def reads_from(now: datetime | pd.Timestamp, days: int) -> pd.Timestamp:
    """The earliest finish a report of ``days`` ending at ``now`` reads: the previous
    period's start, or 30 days back for the trends. Older records matter only as each
    service's last deploy before it (the store's window read brings those)."""
    end = utc_timestamp(now)
    return min(end - timedelta(days=2 * days), end - timedelta(days=30))


@dataclass(frozen=True)
class Report:
    """Everything one environment's report says, before rendering."""

    environment: str
    window: Window
    document: dict[str, Any]  # the deployment-stats JSON
    services: list[dict[str, Any]]  # one table row per service
    events: pd.DataFrame  # the rollbacks of the window, oldest first
    daily: pd.DataFrame  # deploys per day by outcome, and rollbacks


def utc_timestamp(value: datetime | pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def iso_z(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def rounded(value: Any, digits: int) -> float | None:
    """``value`` rounded, or None for a missing number (NaN never reaches the JSON)."""
    if value is None or pd.isna(value):
        return None
    return round(float(value), digits)


def _quantile(values: pd.Series, q: float, digits: int) -> float | None:
    values = values.dropna()
    return rounded(values.quantile(q), digits) if len(values) else None


# -- the numbers -------------------------------------------------------------------------


def _stats(total: int, ok: int, failed: int, mean_duration: float) -> dict[str, Any]:
    return {
        "totalDeployments": total,
        "successfulDeployments": ok,
        "failedDeployments": failed,
        "successRate": round(ok / total * 100, 2) if total else None,
        "averageDuration": rounded(mean_duration, 1) if total else None,
    }


def deployment_stats(deploys: pd.DataFrame) -> dict[str, Any]:
    """``stats``: counts, success rate and average duration of some deployments."""
    return _stats(
        len(deploys),
        int((deploys["status"] == "success").sum()),
        int((deploys["status"] == "failed").sum()),
        deploys["duration_s"].mean(),
    )


def dora(deploys: pd.DataFrame, days: int) -> dict[str, Any]:
    """The four keys over the deployments of one window (rows from ``timeline``)."""
    total = len(deploys)
    successful = deploys.loc[deploys["status"] == "success"]
    lead = successful["lead_h"].dropna()
    failures = deploys.loc[deploys["failure"]]
    restore = failures["restore_h"].dropna()
    return {
        "deploymentFrequencyPerDay": round(len(successful) / days, 3),
        "leadTimeHoursMedian": _quantile(lead, 0.5, 2),
        "leadTimeHoursP90": _quantile(lead, 0.9, 2),
        "leadTimeSampleSize": len(lead),
        "deploymentsWithoutCommitTime": len(successful) - len(lead),
        "changeFailureRatePercent": round(len(failures) / total * 100, 2) if total else None,
        "changeFailures": len(failures),
        "rolledBackDeployments": int(deploys["rolled_back"].sum()),
        "timeToRestoreHoursMedian": _quantile(restore, 0.5, 2),
        "timeToRestoreHoursP90": _quantile(restore, 0.9, 2),
        "restoredCount": len(restore),
        "unrestoredCount": len(failures) - len(restore),
    }


def rollback_stats(
    audit: pd.DataFrame, environment: str, window: Window, records: pd.DataFrame
) -> dict[str, Any]:
    """``rollbacks``: attempts from the audit log, and restore times by trigger.

    ``records`` are the window's timeline rows (deploys and rollbacks)."""
    attempts = audit.loc[
        (audit["environment"] == environment)
        & ~audit["dry_run"].astype(bool)
        & audit["status"].isin(AUDIT_OUTCOMES)
        & window.mask(audit["finished_at"])
    ]
    by_trigger = {}
    for trigger in sorted(set(TRIGGERS) | set(attempts["trigger"].unique())):
        status = attempts.loc[attempts["trigger"] == trigger, "status"]
        by_trigger[trigger] = {"count": len(status)} | {
            s: int((status == s).sum()) for s in ("succeeded", "failed", "refused")
        }
    ran = attempts.loc[attempts["status"] != "refused"]
    duration = (ran["finished_at"] - ran["requested_at"]).dt.total_seconds()

    deploys = records.loc[records["kind"] == "deploy"]
    restored = deploys.loc[deploys["failure"] & deploys["restored_at"].notna()]
    by_restorer = restored.groupby("restored_by")["restore_h"].median()
    restorers = sorted(set(TRIGGERS) | set(by_restorer.index))
    in_history = records.loc[records["kind"] == "rollback"]
    return {
        "count": len(attempts),
        **{s: int((attempts["status"] == s).sum()) for s in AUDIT_OUTCOMES},
        "byTrigger": by_trigger,
        "durationSecondsMedian": _quantile(duration, 0.5, 1),
        "durationSecondsP90": _quantile(duration, 0.9, 1),
        "timeToRestoreHoursMedianByTrigger": {t: rounded(by_restorer.get(t), 2) for t in restorers},
        "recordedInHistory": {
            "count": len(in_history),
            "succeeded": int((in_history["status"] == "success").sum()),
            "failed": int((in_history["status"] == "failed").sum()),
        },
    }


def per_service(records: pd.DataFrame) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """For each service of the window: its ``stats`` and its summary-table columns,
    by one group-by (rows from ``timeline``)."""
    rollback = records["kind"] == "rollback"
    deploy, failure = ~rollback, records["failure"]
    parts = pd.DataFrame(
        {
            "service": records["service"],
            "deploys": deploy,
            "ok": deploy & (records["status"] == "success"),
            "failed": deploy & (records["status"] == "failed"),
            "duration": records["duration_s"].where(deploy),
            "failures": failure,
            "rolled_back": records["rolled_back"],
            "restored": failure & records["restored_at"].notna(),
            "restore_h": records["restore_h"].where(failure),
            "rollbacks": rollback,
            "automatic": rollback & records["trigger"].isin(AUTOMATIC_TRIGGERS),
        }
    )
    sums = parts.drop(columns=["duration", "restore_h"]).groupby("service", observed=True).sum()
    means = parts.groupby("service", observed=True)["duration"].mean()
    medians = parts.groupby("service", observed=True)["restore_h"].median()
    out = {}
    for service, row in sums.sort_index().iterrows():
        total, failures = int(row["deploys"]), int(row["failures"])
        stats = _stats(total, int(row["ok"]), int(row["failed"]), means[service])
        out[str(service)] = (
            stats,
            {
                "changeFailures": failures,
                "changeFailureRatePercent": round(failures / total * 100, 2) if total else None,
                "rolledBackDeployments": int(row["rolled_back"]),
                "restoredCount": int(row["restored"]),
                "unrestoredCount": failures - int(row["restored"]),
                "timeToRestoreHoursMedian": rounded(medians[service], 2),
                "rollbacks": int(row["rollbacks"]),
                "automaticRollbacks": int(row["automatic"]),
            },
        )
    return out


def daily_counts(records: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per UTC day of the window: deploys succeeded / rolled back / failed, and rollbacks."""
    first = window.start.tz_convert("UTC").normalize()
    last = (window.end - pd.Timedelta(microseconds=1)).tz_convert("UTC").normalize()
    days = pd.date_range(first.tz_localize(None), last.tz_localize(None), freq="D")
    since = (records["finished_at"] - first).to_numpy(dtype="timedelta64[ns]")
    day = (since // np.timedelta64(1, "D")).astype(np.int64)
    rollback = (records["kind"] == "rollback").to_numpy()
    failed = ~rollback & (records["status"] == "failed").to_numpy()
    rolled_back = ~rollback & ~failed & records["rolled_back"].to_numpy()
    outcomes = {
        "succeeded": ~rollback & ~failed & ~rolled_back,
        "rolledBack": rolled_back,
        "failed": failed,
        "rollbacks": rollback,
    }
    return pd.DataFrame(
        {k: np.bincount(day[mask], minlength=len(days)) for k, mask in outcomes.items()},
        index=days,
    )


def rollback_events(records: pd.DataFrame) -> pd.DataFrame:
    """The rollbacks of the window, oldest first: when, from -> to, trigger, outcome, and
    the time to restore (from the reverted deploy's end) for a successful one."""
    rows = records.loc[records["kind"] == "rollback"]
    restore_h = (rows["finished_at"] - rows["reverted_finished_at"]).dt.total_seconds() / 3600
    return pd.DataFrame(
        {
            "finished_at": rows["finished_at"],
            "service": rows["service"],
            "from_version": rows["from_version"],
            "to_version": rows["to_version"],
            "trigger": rows["trigger"],
            "status": rows["status"],
            "restore_h": restore_h.where(rows["status"] == "success"),
        }
    ).reset_index(drop=True)


PERIOD_COLUMNS = ["status", "duration_s", "lead_h", "failure", "restore_h", "rolled_back"]


def compute(
    history: pd.DataFrame,
    audit: pd.DataFrame,
    environment: str,
    now: datetime | pd.Timestamp,
    days: int,
    retention_days: int = 90,
    stale_days: int = 14,
    known_services: Iterable[str] = (),
) -> Report:
    """Every number of one environment's report for the window ending at ``now``.
    ``known_services`` (the configured ones) can be named stale with no record at all."""
    from reports import findings

    window = Window.ending(now, days)
    line = timeline(history, environment, window.end, reads_from(window.end, days))
    records = line.loc[window.mask(line["finished_at"])]
    by_service = per_service(records)
    document = _counts(environment, window, line, records, audit, by_service)
    document["servicePercentiles"] = findings.service_percentiles(records)
    document["doraBands"] = findings.dora_bands(document["dora"])
    document["weeklyTrends"] = findings.weekly_trends(line, window)
    document["findings"] = findings.needs_attention(
        environment,
        history,
        line,
        records,
        audit,
        window,
        document["serviceDora"],
        sorted(known_services),
        stale_days,
    )
    document["events"] = findings.events(history, records)
    document["warnings"] = findings.retention_warnings(window, retention_days)
    rows = [
        {"service": s, **document["services"][s], **document["serviceDora"][s]}
        for s in sorted(by_service)
    ]
    return Report(
        environment=environment,
        window=window,
        document=document,
        services=rows,
        events=rollback_events(records),
        daily=daily_counts(records, window),
    )


def _counts(
    environment: str,
    window: Window,
    line: pd.DataFrame,
    records: pd.DataFrame,
    audit: pd.DataFrame,
    by_service: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> dict[str, Any]:
    """The counted part of the deployment-stats document: the window's stats, DORA keys
    and rollbacks, per service, the recent trends and the previous period."""
    deploys = records.loc[records["kind"] == "deploy"]
    # Trend periods need only what deployment_stats and dora read: copy just that.
    slim = line[PERIOD_COLUMNS]
    is_deploy = line["kind"] == "deploy"

    def period(w: Window) -> pd.DataFrame:
        return slim.loc[is_deploy & w.mask(line["finished_at"])]

    previous = window.previous()
    before = period(previous)
    return {
        "environment": environment,
        "generatedAt": iso_z(window.end),
        "window": window.as_dict(),
        "stats": deployment_stats(deploys),
        "recentTrends": {
            f"last{n}Days": deployment_stats(period(Window.ending(window.end, n))) for n in (7, 30)
        },
        "dora": dora(deploys, window.days),
        "rollbacks": rollback_stats(audit, environment, window, records),
        "services": {s: stats for s, (stats, _) in by_service.items()},
        "serviceDora": {s: numbers for s, (_, numbers) in by_service.items()},
        "previousPeriod": {
            "window": previous.as_dict(),
            "stats": deployment_stats(before),
            "dora": dora(before, window.days),
        },
        "definitions": DEFINITIONS,
    }
