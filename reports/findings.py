"""What the report names, beyond the numbers: the records behind them, who needs
attention, DORA performance bands and weekly trends. Pure functions over the timeline
rows of ``reports.metrics`` (with ``source``, the row of the history frame)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports.metrics import Window, _quantile, iso_z, rounded

WORST_SHOWN = 3
DEFAULT_STALE_DAYS = 14

# DORA performance bands. Source: Accelerate State of DevOps Report 2021 (DORA / Google
# Cloud), table "software delivery performance". Its words are turned into boundaries:
# each band holds values up to (or from) the number written beside it.
BANDS_SOURCE = "Accelerate State of DevOps Report 2021 (DORA)"
BANDS: dict[str, dict[str, Any]] = {
    "deploymentFrequencyPerDay": {
        "higherIsBetter": True,
        "bands": [
            ("elite", 1.0, "on demand, several deploys a day (>= 1/day)"),
            ("high", 1 / 30, "between once a week and once a month (>= 1/30 per day)"),
            ("medium", 1 / 182, "between once a month and once every 6 months"),
            ("low", 0.0, "fewer than once every 6 months"),
        ],
    },
    "leadTimeHoursMedian": {
        "higherIsBetter": False,
        "bands": [
            ("elite", 1.0, "less than one hour"),
            ("high", 24 * 7, "between one day and one week (<= 168 h)"),
            ("medium", 24 * 182, "between one month and six months (<= 4368 h)"),
            ("low", float("inf"), "more than six months"),
        ],
    },
    "timeToRestoreHoursMedian": {
        "higherIsBetter": False,
        "bands": [
            ("elite", 1.0, "less than one hour"),
            ("high", 24.0, "less than one day"),
            ("medium", 24 * 7, "between one day and one week"),
            ("low", float("inf"), "more than one week (the report: more than six months)"),
        ],
    },
    "changeFailureRatePercent": {
        "higherIsBetter": False,
        "bands": [
            ("elite", 15.0, "0-15%"),
            ("high/medium/low", 30.0, "16-30% (the report gives one range for all three)"),
            ("below the reported ranges", float("inf"), "above 30%"),
        ],
    },
}


def band(key: str, value: float | None) -> str | None:
    """The band a value falls in (boundaries included in the better band)."""
    if value is None:
        return None
    spec = BANDS[key]
    for name, limit, _ in spec["bands"]:
        if (value >= limit) if spec["higherIsBetter"] else (value <= limit):
            return str(name)
    return str(spec["bands"][-1][0])


def dora_bands(dora: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": BANDS_SOURCE,
        "keys": {
            key: {
                "value": dora.get(key),
                "band": band(key, dora.get(key)),
                "thresholds": [
                    {"band": n, "limit": None if np.isinf(lim) else round(lim, 4), "text": t}
                    for n, lim, t in spec["bands"]
                ],
            }
            for key, spec in BANDS.items()
        },
    }


def weekly_trends(line: pd.DataFrame, window: Window) -> list[dict[str, Any]]:
    """The four keys per 7-day period, oldest first, periods counted back from the end
    of the window (the first may be shorter)."""
    out = []
    end = window.end
    while end > window.start:
        start = max(end - pd.Timedelta(days=7), window.start)
        rows = line.loc[
            (line["kind"] == "deploy")
            & (line["finished_at"] >= start)
            & (line["finished_at"] < end)
        ]
        ok = rows.loc[rows["status"] == "success"]
        failures = rows.loc[rows["failure"]]
        days = (end - start).total_seconds() / 86400
        out.append(
            {
                "from": iso_z(start),
                "to": iso_z(end),
                "deployments": len(rows),
                "deploymentFrequencyPerDay": round(len(ok) / days, 3),
                "changeFailureRatePercent": round(len(failures) / len(rows) * 100, 2)
                if len(rows)
                else None,
                "leadTimeHoursMedian": _quantile(ok["lead_h"], 0.5, 2),
                "timeToRestoreHoursMedian": _quantile(failures["restore_h"], 0.5, 2),
            }
        )
        end = start
    return out[::-1]


def _text_at(history: pd.DataFrame, column: str, rows: pd.Series) -> list[Any]:
    values = history[column].iloc[rows.to_numpy()]
    return [None if pd.isna(v) else str(v) for v in values]


def events(history: pd.DataFrame, records: pd.DataFrame) -> list[dict[str, Any]]:
    """Failed or rolled-back deploys and rollbacks of the window, oldest first, with the
    record ids that trace every number to the history."""
    rows = records.loc[records["failure"] | (records["kind"] == "rollback")]
    ids = _text_at(history, "record_id", rows["source"])
    versions = _text_at(history, "version", rows["source"])
    out = []
    for r, record_id, version in zip(rows.itertuples(index=False), ids, versions, strict=True):
        event = {
            "recordId": record_id,
            "kind": r.kind,
            "service": str(r.service),
            "version": version,
            "status": r.status,
            "finishedAt": iso_z(r.finished_at),
        }
        if r.kind == "rollback":
            event |= {"fromVersion": r.from_version, "trigger": r.trigger}
        else:
            event |= {
                "rolledBack": bool(r.rolled_back),
                "restoredAt": None if pd.isna(r.restored_at) else iso_z(r.restored_at),
                "restoredBy": r.restored_by,
                "restoreHours": rounded(r.restore_h, 2),
            }
        out.append(event)
    return out


def _attempts(audit: pd.DataFrame, environment: str, window: Window) -> pd.DataFrame:
    rows = audit.loc[
        (audit["environment"] == environment)
        & ~audit["dry_run"].astype(bool)
        & window.mask(audit["finished_at"])
    ]
    return rows.sort_values(["requested_at", "audit_id"], kind="stable")  # arrival order: none


def _named_services(by_service: dict[str, dict[str, Any]], key: str) -> list[dict[str, Any]]:
    ranked = [
        (numbers[key], service)
        for service, numbers in by_service.items()
        if numbers.get(key) is not None and numbers.get("changeFailures")
    ]
    ranked.sort(key=lambda pair: (-pair[0], pair[1]))
    return [
        {"service": s, key: v, "changeFailures": by_service[s]["changeFailures"]}
        for v, s in ranked[:WORST_SHOWN]
    ]


def needs_attention(
    environment: str,
    history: pd.DataFrame,
    line: pd.DataFrame,
    records: pd.DataFrame,
    audit: pd.DataFrame,
    window: Window,
    service_dora: dict[str, dict[str, Any]],
    known_services: list[str],
    stale_days: int,
) -> dict[str, Any]:
    """Findings that name what to do: unrestored failures (where, which version, since
    when, for how long, the audit ids of attempts on it), the worst services, refused
    attempts, stale services, fix-forwards against rollbacks."""
    attempts = _attempts(audit, environment, window)
    return {
        "unrestored": _unrestored(environment, history, records, attempts, window),
        "worstChangeFailure": _named_services(service_dora, "changeFailureRatePercent"),
        "slowestRestore": _named_services(service_dora, "timeToRestoreHoursMedian"),
        "refused": _refused(environment, attempts),
        "staleDays": stale_days,
        "stale": _stale(environment, line, known_services, window, stale_days),
        "restoredBy": _restored_by(records),
    }


def _unrestored(
    environment: str,
    history: pd.DataFrame,
    records: pd.DataFrame,
    attempts: pd.DataFrame,
    window: Window,
) -> list[dict[str, Any]]:
    """Failures of the window with no later successful record, with the audit ids of
    the rollback attempts on their service since."""
    failed = records.loc[records["failure"] & records["restored_at"].isna()]
    out = []
    for r, version, record_id in zip(
        failed.itertuples(index=False),
        _text_at(history, "version", failed["source"]),
        _text_at(history, "record_id", failed["source"]),
        strict=True,
    ):
        tried = attempts.loc[
            (attempts["service"] == str(r.service)) & (attempts["requested_at"] >= r.finished_at)
        ]
        out.append(
            {
                "service": f"{environment}/{r.service}",
                "version": version,
                "recordId": record_id,
                "since": iso_z(r.finished_at),
                "openHours": round((window.end - r.finished_at).total_seconds() / 3600, 1),
                "auditIds": [str(a) for a in tried["audit_id"]],
            }
        )
    return out


def _refused(environment: str, attempts: pd.DataFrame) -> list[dict[str, Any]]:
    """Rollback attempts of the window a safety check refused, and which check."""
    return [
        {
            "auditId": str(a.audit_id),
            "service": f"{environment}/{a.service}",
            "requestedAt": iso_z(a.requested_at),
            "trigger": a.trigger,
            "failedCheck": None if pd.isna(a.failed_check) else str(a.failed_check),
        }
        for a in attempts.loc[attempts["status"] == "refused"].itertuples(index=False)
    ]


def _stale(
    environment: str,
    line: pd.DataFrame,
    known_services: list[str],
    window: Window,
    stale_days: int,
) -> list[dict[str, Any]]:
    """Services seen in the history read or configured, with no deploy for more than
    ``stale_days`` before the end of the window (or none at all)."""
    deploys = line.loc[line["kind"] == "deploy"]
    last = deploys.groupby("service", observed=True)["finished_at"].max()
    seen = {str(s) for s in line["service"].unique()} | set(known_services)
    stale = []
    for service in sorted(seen):
        when = last.get(service)
        idle = None if when is None or pd.isna(when) else (window.end - when)
        if idle is None or idle > pd.Timedelta(days=stale_days):
            stale.append(
                {
                    "service": f"{environment}/{service}",
                    "lastDeploy": None if idle is None else iso_z(when),
                    "daysSinceDeploy": None
                    if idle is None
                    else round(idle.total_seconds() / 86400, 1),
                }
            )
    return stale


def _restored_by(records: pd.DataFrame) -> dict[str, Any]:
    """Restored failures of the window: by a fix-forward deploy against a rollback."""
    restored = records.loc[records["failure"] & records["restored_at"].notna()]
    forward = restored.loc[restored["restored_by"] == "deploy", "restore_h"]
    back = restored.loc[restored["restored_by"] != "deploy", "restore_h"]
    return {
        "fixForward": {"count": len(forward), "hoursMedian": _quantile(forward, 0.5, 2)},
        "rollback": {"count": len(back), "hoursMedian": _quantile(back, 0.5, 2)},
    }


def service_percentiles(records: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per service: duration median/p90 beside the mean, restore median/p90."""
    out = {}
    for service, rows in records.groupby("service", observed=True):
        deploys = rows.loc[rows["kind"] == "deploy"]
        failures = deploys.loc[deploys["failure"]]
        out[str(service)] = {
            "durationSecondsMedian": _quantile(deploys["duration_s"], 0.5, 1),
            "durationSecondsP90": _quantile(deploys["duration_s"], 0.9, 1),
            "leadTimeHoursMedian": _quantile(
                deploys.loc[deploys["status"] == "success", "lead_h"], 0.5, 2
            ),
            "timeToRestoreHoursMedian": _quantile(failures["restore_h"], 0.5, 2),
            "timeToRestoreHoursP90": _quantile(failures["restore_h"], 0.9, 2),
        }
    return out


def retention_warnings(window: Window, retention_days: int) -> list[str]:
    oldest = window.end - pd.Timedelta(days=retention_days)
    previous = window.previous()
    if previous.start < oldest:
        return [
            f"The previous period starts {iso_z(previous.start)}, before the history's "
            f"{retention_days}-day retention ({iso_z(oldest)}): records there may have "
            "expired, so comparisons with it understate that period."
        ]
    return []
