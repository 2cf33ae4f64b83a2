"""The timeline: one environment's history, ordered and linked, as arrays.

Records are ordered by ``finished_at``, then deploys before rollbacks, then
``record_id``: a total order, so the result never depends on the order rows arrive in.
Each rollback is linked to the deploy it reverted and each failure to the record that
restored it, per service, by running max/min over the rows (no Python loop per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Versions and record ids are text with many values: the timeline carries only the
# small columns, and reads versions for the rollbacks alone.
TIMELINE_COLUMNS = [
    "service",
    "status",
    "kind",
    "trigger",
    "committed_at",
    "started_at",
    "finished_at",
]


def time_order(finished: pd.Series, rollback: np.ndarray, record_id: pd.Series) -> np.ndarray:
    """Positions in report order: by finished_at, deploys before rollbacks at the same
    instant, then by record_id. Numeric sort first; only tied rows compare record ids."""
    key = finished.to_numpy(dtype="datetime64[ns]").view(np.int64) * 2 + rollback
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    if same.any():
        tied = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
        ids = record_id.to_numpy(dtype=object)[order[tied]].astype(str)
        order[tied] = order[tied][np.lexsort((ids, ordered[tied]))]
    return order


def _positions(history: pd.DataFrame, keep: pd.Series, since: pd.Timestamp | None) -> Any:
    """Row positions of the timeline: ``keep`` rows from ``since`` on, plus each
    service's last deploy before it (the one a later rollback may revert). Nothing
    older can change a number of the report."""
    if since is None:
        return np.flatnonzero(keep.to_numpy())
    old = keep & (history["finished_at"] < since)
    recent = np.flatnonzero((keep & ~old).to_numpy())
    candidates = np.flatnonzero((old & (history["kind"] == "deploy")).to_numpy())
    # Only deploys at their service's latest time can be the last one: order just those.
    times = history[["service", "finished_at"]].iloc[candidates]
    latest = times.groupby("service", observed=True)["finished_at"].transform("max")
    candidates = candidates[(times["finished_at"] == latest).to_numpy()]
    deploys = history[["service", "finished_at", "record_id"]].iloc[candidates]
    order = time_order(
        deploys["finished_at"], np.zeros(len(deploys), np.int64), deploys["record_id"]
    )
    newest_first = order[::-1]
    last = ~deploys["service"].iloc[newest_first].duplicated().to_numpy()
    return np.concatenate([candidates[newest_first[last]], recent])


def _text(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Values of a text column at some positions, missing ones as None."""
    values = column.iloc[rows]
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


def timeline(
    history: pd.DataFrame,
    environment: str,
    now: pd.Timestamp,
    since: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The environment's records finished before ``now`` (from ``since`` on, if given),
    in report order, with the links the definitions need: ``rolled_back`` and
    ``failure`` for deploys, the finish of the deploy a rollback reverted
    (``reverted_finished_at``), and when a failure was restored and by what."""
    df, source, rollback = _ordered(history, environment, now, since)
    finished_ns = df["finished_at"].to_numpy(dtype="datetime64[ns]")
    walk = _walk(df["service"], rollback, (df["status"] == "success").to_numpy())
    links = _rollback_links(history, source, walk, rollback, finished_ns)
    failure = ~rollback & ((df["status"] == "failed").to_numpy() | links.rolled_back)
    restored_at, restored_by = _restores(walk, failure, rollback, finished_ns, df["trigger"])

    utc = df["finished_at"].dtype
    # Object columns as they are: letting pandas infer a string dtype costs a pass each.
    df["from_version"] = pd.Series(links.from_version, dtype=object, copy=False)
    df["to_version"] = pd.Series(links.to_version, dtype=object, copy=False)
    df["rolled_back"] = links.rolled_back
    df["failure"] = failure
    df["reverted_finished_at"] = (
        pd.Series(links.reverted, dtype="datetime64[ns]").dt.tz_localize("UTC").astype(utc)
    )
    df["restored_at"] = pd.Series(restored_at).dt.tz_localize("UTC").astype(utc)
    df["restored_by"] = pd.Series(restored_by, dtype=object, copy=False)
    df["duration_s"] = (df["finished_at"] - df["started_at"]).dt.total_seconds()
    df["lead_h"] = (df["finished_at"] - df["committed_at"]).dt.total_seconds() / 3600
    df["restore_h"] = (df["restored_at"] - df["finished_at"]).dt.total_seconds() / 3600
    return df


def _ordered(
    history: pd.DataFrame, environment: str, now: pd.Timestamp, since: pd.Timestamp | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The timeline's rows in report order (the small columns, and ``source``: the row
    of ``history``, where record ids and versions stay), their positions in
    ``history``, and which of them are rollbacks."""
    finished = history["finished_at"]
    keep = (history["environment"] == environment) & finished.notna() & (finished < now)
    positions = _positions(history, keep, since)
    picked = history[["finished_at", "kind", "record_id"]].iloc[positions]
    rollback = (picked["kind"] == "rollback").to_numpy()
    order = time_order(picked["finished_at"], rollback, picked["record_id"])
    source = positions[order]
    df = history[TIMELINE_COLUMNS].iloc[source].reset_index(drop=True)
    df["source"] = source
    return df, source, rollback[order]


@dataclass(frozen=True)
class _Walk:
    """Each service's records in time order. ``rows`` are the timeline's positions
    grouped by service; for each place p of ``rows``: where its service's group starts
    and ends, the place of the last deploy at or before p, and of the first success
    after p (``len(rows)`` if none)."""

    rows: np.ndarray
    group_start: np.ndarray
    group_end: np.ndarray
    deploy_before: np.ndarray
    success_after: np.ndarray


def _walk(service: pd.Series, rollback: np.ndarray, ok: np.ndarray) -> _Walk:
    """Running max/min over each service's group find the deploy before / the success
    after every record, without a Python loop."""
    n = len(service)
    codes, _ = pd.factorize(service)
    rows = np.lexsort((np.arange(n), codes))
    p = np.arange(n)
    new_group = np.r_[True, codes[rows][1:] != codes[rows][:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(new_group, p, 0)) if n else p
    group_end = np.minimum.accumulate(np.where(np.r_[new_group[1:], True], p, n)[::-1])[::-1]
    deploy_before = np.maximum.accumulate(np.where(~rollback[rows], p, -1)) if n else p
    success_from = np.minimum.accumulate(np.where(ok[rows], p, n)[::-1])[::-1]
    success_after = np.r_[success_from[1:], n] if n else p
    return _Walk(rows, group_start, group_end, deploy_before, success_after)


@dataclass(frozen=True)
class _Links:
    """Per timeline row: a rollback's versions, whether a deploy was rolled back, and
    for a rollback the finish of the deploy it reverted (NaT if none)."""

    from_version: np.ndarray
    to_version: np.ndarray
    rolled_back: np.ndarray
    reverted: np.ndarray


def _rollback_links(
    history: pd.DataFrame,
    source: np.ndarray,
    walk: _Walk,
    rollback: np.ndarray,
    finished_ns: np.ndarray,
) -> _Links:
    """A rollback reverts the service's last deploy before it, if it names its version."""
    n = len(rollback)
    rb = np.flatnonzero(rollback[walk.rows])
    has_deploy = walk.deploy_before[rb] >= walk.group_start[rb]
    rb, target = walk.rows[rb[has_deploy]], walk.rows[walk.deploy_before[rb[has_deploy]]]
    all_rb = np.flatnonzero(rollback)
    from_version = np.full(n, None, object)
    to_version = np.full(n, None, object)
    from_version[all_rb] = _text(history["from_version"], source[all_rb])
    to_version[all_rb] = _text(history["version"], source[all_rb])
    names = _text(history["version"], source[target]) == from_version[rb]
    rb, target = rb[names], target[names]
    rolled_back = np.zeros(n, bool)
    rolled_back[target] = True
    reverted = np.full(n, np.datetime64("NaT"), "datetime64[ns]")
    reverted[rb] = finished_ns[target]
    return _Links(from_version, to_version, rolled_back, reverted)


def _restores(
    walk: _Walk,
    failure: np.ndarray,
    rollback: np.ndarray,
    finished_ns: np.ndarray,
    triggers: pd.Series,
) -> tuple[np.ndarray, np.ndarray]:
    """A failure is restored by the next successful record of the same service: when
    (NaT if not yet), and by what (the rollback's trigger, or ``deploy``)."""
    n = len(failure)
    fail = np.flatnonzero(failure[walk.rows])
    found = walk.success_after[fail] <= walk.group_end[fail]
    fail, fix = walk.rows[fail[found]], walk.rows[walk.success_after[fail[found]]]
    restored_at = np.full(n, np.datetime64("NaT"), "datetime64[ns]")
    restored_at[fail] = finished_ns[fix]
    restored_by = np.full(n, None, object)
    trigger = triggers.to_numpy(dtype=object)
    restored_by[fail] = np.where(
        rollback[fix], pd.Series(trigger[fix], dtype=object).fillna("unknown"), "deploy"
    )
    return restored_at, restored_by
