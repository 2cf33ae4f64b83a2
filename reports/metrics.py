"""Every number of the deployment report, as pure functions over DataFrames.

Input frames have the columns of ``reports.load`` (times are UTC ``datetime64``). The
definitions the numbers follow are in ``DEFINITIONS`` and are written into every report.

Records are ordered by ``finished_at``, then deploys before rollbacks, then
``record_id``: a total order, so the result never depends on the order rows arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

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


# -- the timeline: one environment's history, ordered and linked -------------------------


def timeline(history: pd.DataFrame, environment: str, now: pd.Timestamp) -> pd.DataFrame:
    """The environment's records finished before ``now``, in order, with the links the
    definitions need: ``rolled_back`` and ``failure`` for deploys, the deploy a rollback
    reverted (``reverted_finished_at``), and when a failure was restored and by what."""
    keep = (
        (history["environment"] == environment)
        & history["finished_at"].notna()
        & (history["finished_at"] < now)
    )
    df = history.loc[keep].copy()
    df["_rollback"] = df["kind"] == "rollback"
    df = df.sort_values(["finished_at", "_rollback", "record_id"], kind="stable")
    df = df.reset_index(drop=True)
    df["seq"] = np.arange(len(df), dtype=np.int64)
    deploy = ~df["_rollback"]

    # A rollback reverts the service's last deploy before it, if it names its version.
    deploys = df.loc[deploy, ["seq", "service", "version", "finished_at"]].rename(
        columns={"seq": "d_seq", "version": "d_version", "finished_at": "d_finished_at"}
    )
    rollbacks = df.loc[~deploy, ["seq", "service", "from_version"]]
    df["reverted_finished_at"] = pd.Series(pd.NaT, index=df.index, dtype=df["finished_at"].dtype)
    df["rolled_back"] = False
    if len(rollbacks) and len(deploys):
        hit = pd.merge_asof(
            rollbacks,
            deploys,
            left_on="seq",
            right_on="d_seq",
            by="service",
            direction="backward",
            allow_exact_matches=False,
        )
        matched = (hit["from_version"] == hit["d_version"]).fillna(False).to_numpy(bool)
        df.loc[hit["seq"].to_numpy()[matched], "reverted_finished_at"] = hit["d_finished_at"][
            matched
        ].to_numpy()
        df.loc[np.unique(hit["d_seq"].to_numpy()[matched]).astype(np.int64), "rolled_back"] = True

    df["failure"] = deploy & ((df["status"] == "failed") | df["rolled_back"])

    # A failure is restored by the next successful record of the same service.
    df["restored_at"] = pd.Series(pd.NaT, index=df.index, dtype=df["finished_at"].dtype)
    df["restored_by"] = pd.Series(None, index=df.index, dtype="object")
    failures = df.loc[df["failure"], ["seq", "service"]]
    successes = df.loc[df["status"] == "success", ["seq", "service", "finished_at"]]
    if len(failures) and len(successes):
        successes = successes.assign(
            by=np.where(
                df.loc[successes.index, "_rollback"],
                df.loc[successes.index, "trigger"].fillna("unknown").astype(object),
                "deploy",
            )
        ).rename(columns={"seq": "r_seq", "finished_at": "r_finished_at"})
        hit = pd.merge_asof(
            failures,
            successes,
            left_on="seq",
            right_on="r_seq",
            by="service",
            direction="forward",
            allow_exact_matches=False,
        )
        df.loc[hit["seq"].to_numpy(), "restored_at"] = hit["r_finished_at"].to_numpy()
        df.loc[hit["seq"].to_numpy(), "restored_by"] = hit["by"].to_numpy()
    df.loc[df["restored_at"].isna(), "restored_by"] = None

    df["duration_s"] = (df["finished_at"] - df["started_at"]).dt.total_seconds()
    df["lead_h"] = (df["finished_at"] - df["committed_at"]).dt.total_seconds() / 3600
    df["restore_h"] = (df["restored_at"] - df["finished_at"]).dt.total_seconds() / 3600
    return df.drop(columns="_rollback")


# -- the numbers -------------------------------------------------------------------------


def deployment_stats(deploys: pd.DataFrame) -> dict[str, Any]:
    """``stats``: counts, success rate and average duration of some deployments."""
    total = len(deploys)
    ok = int((deploys["status"] == "success").sum())
    return {
        "totalDeployments": total,
        "successfulDeployments": ok,
        "failedDeployments": int((deploys["status"] == "failed").sum()),
        "successRate": round(ok / total * 100, 2) if total else None,
        "averageDuration": rounded(deploys["duration_s"].mean(), 1) if total else None,
    }


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
    for trigger in sorted(set(TRIGGERS) | set(attempts["trigger"])):
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


def service_dora(records: pd.DataFrame) -> dict[str, Any]:
    """The per-service columns of the summary table (rows from one service's window)."""
    deploys = records.loc[records["kind"] == "deploy"]
    failures = deploys.loc[deploys["failure"]]
    total = len(deploys)
    return {
        "changeFailures": len(failures),
        "changeFailureRatePercent": round(len(failures) / total * 100, 2) if total else None,
        "rolledBackDeployments": int(deploys["rolled_back"].sum()),
        "restoredCount": int(failures["restored_at"].notna().sum()),
        "unrestoredCount": int(failures["restored_at"].isna().sum()),
        "timeToRestoreHoursMedian": _quantile(failures["restore_h"], 0.5, 2),
        "rollbacks": int((records["kind"] == "rollback").sum()),
        "automaticRollbacks": int(
            ((records["kind"] == "rollback") & records["trigger"].isin(AUTOMATIC_TRIGGERS)).sum()
        ),
    }


def daily_counts(records: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per UTC day of the window: deploys succeeded / rolled back / failed, and rollbacks."""
    outcome = np.select(
        [records["kind"] == "rollback", records["status"] == "failed", records["rolled_back"]],
        ["rollbacks", "failed", "rolledBack"],
        default="succeeded",
    )
    day = records["finished_at"].dt.tz_convert("UTC").dt.normalize().dt.tz_localize(None)
    table = pd.crosstab(day, outcome) if len(records) else pd.DataFrame()
    days = pd.date_range(
        window.start.tz_convert("UTC").normalize().tz_localize(None),
        (window.end - pd.Timedelta(microseconds=1)).tz_convert("UTC").normalize().tz_localize(None),
        freq="D",
    )
    columns = ["succeeded", "rolledBack", "failed", "rollbacks"]
    return table.reindex(index=days, columns=columns, fill_value=0).astype(int)


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
            "to_version": rows["version"],
            "trigger": rows["trigger"],
            "status": rows["status"],
            "restore_h": restore_h.where(rows["status"] == "success"),
        }
    ).reset_index(drop=True)


def compute(
    history: pd.DataFrame,
    audit: pd.DataFrame,
    environment: str,
    now: datetime | pd.Timestamp,
    days: int,
) -> Report:
    """Every number of one environment's report for the window ending at ``now``."""
    window = Window.ending(now, days)
    line = timeline(history, environment, window.end)
    records = line.loc[window.mask(line["finished_at"])]
    deploys = records.loc[records["kind"] == "deploy"]

    def period(w: Window) -> pd.DataFrame:
        return line.loc[(line["kind"] == "deploy") & w.mask(line["finished_at"])]

    previous = window.previous()
    services = sorted(set(records["service"]))
    by_service = dict(tuple(records.groupby("service", sort=True))) if services else {}
    document = {
        "environment": environment,
        "generatedAt": iso_z(window.end),
        "window": window.as_dict(),
        "stats": deployment_stats(deploys),
        "recentTrends": {
            f"last{n}Days": deployment_stats(period(Window.ending(window.end, n))) for n in (7, 30)
        },
        "dora": dora(deploys, days),
        "rollbacks": rollback_stats(audit, environment, window, records),
        "services": {
            s: deployment_stats(g.loc[g["kind"] == "deploy"]) for s, g in by_service.items()
        },
        "serviceDora": {s: service_dora(g) for s, g in by_service.items()},
        "previousPeriod": {
            "window": previous.as_dict(),
            "stats": deployment_stats(period(previous)),
            "dora": dora(period(previous), days),
        },
        "definitions": DEFINITIONS,
    }
    rows = [
        {"service": s, **document["services"][s], **document["serviceDora"][s]} for s in services
    ]
    return Report(
        environment=environment,
        window=window,
        document=document,
        services=rows,
        events=rollback_events(records),
        daily=daily_counts(records, window),
    )
