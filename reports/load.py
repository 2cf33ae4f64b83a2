"""Records into DataFrames: from the stores, from models, from plain dicts, from CSV.

Every frame comes out with the same columns and UTC ``datetime64`` times, whatever it
was read from, so the metrics never look at where the data came from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reports.metrics import reads_from
from rollback.models import AuditRecord, DeploymentRecord
from rollback.runtime import Runtime
from rollback.stores._dynamo import side_by_side
from rollback.stores.audit import AuditStore
from rollback.stores.history import RECORD_FIELDS, HistoryStore, record_to_dict
from rollback.stores.history_days import BLOCK_FIELDS

log = logging.getLogger(__name__)

# The stored record's fields, less those no report number reads.
HISTORY_COLUMNS = tuple(
    f
    for f in RECORD_FIELDS
    if f not in ("image_tag", "schema_version", "min_schema_version", "max_schema_version")
)
HISTORY_TIMES = ("committed_at", "started_at", "finished_at")
# Few distinct values: categoricals make filters, sorts and group-bys integer work.
HISTORY_CATEGORIES = ("environment", "service", "status", "kind", "trigger")
AUDIT_COLUMNS = (
    "audit_id",
    "environment",
    "service",
    "status",
    "trigger",
    "requested_at",
    "finished_at",
    "from_version",
    "to_version",
    "dry_run",
    "failed_check",
)
AUDIT_TIMES = ("requested_at", "finished_at")


def _utc(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    return pd.to_datetime(values, utc=True, format="ISO8601")


def _frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: tuple[str, ...]) -> Any:
    if not isinstance(rows, pd.DataFrame):
        rows = pd.DataFrame.from_records(list(rows), columns=list(columns))
    # a missing column comes out empty text, made as such (reindexed, it would come as
    # float NaN, whose conversion below costs ~20 ms at 500k rows); no column is copied
    missing = {c: pd.Series(None, index=rows.index, dtype=object) for c in columns if c not in rows}
    df = rows.assign(**missing).reindex(columns=list(columns))
    for column in columns:
        if df[column].dtype.kind == "f":  # all missing: text, not float
            df[column] = df[column].astype(object)
    return df


def history_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Deployment history rows (store items, ``record_to_dict`` output or a frame)."""
    df = _frame(rows, HISTORY_COLUMNS)
    for column in HISTORY_TIMES:
        df[column] = _utc(df[column])
    df["kind"] = _text(df["kind"], "deploy")
    df["record_id"] = _text(df["record_id"], "")
    for column in HISTORY_CATEGORIES:
        df[column] = df[column].astype("category")
    return df


def _text(values: pd.Series, default: str) -> pd.Series:
    return values.fillna(default)


def records_frame(records: Iterable[DeploymentRecord]) -> pd.DataFrame:
    return history_frame(record_to_dict(r) for r in records)


def audit_frame(rows: Iterable[AuditRecord | Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rollback attempts (``AuditRecord``s, plain dicts or a frame)."""
    if not isinstance(rows, pd.DataFrame):
        rows = [_audit_row(r) if isinstance(r, AuditRecord) else r for r in rows]
    df = _frame(rows, AUDIT_COLUMNS)
    for column in AUDIT_TIMES:
        df[column] = _utc(df[column])
    if df["dry_run"].dtype != bool:
        df["dry_run"] = df["dry_run"].astype(str).str.lower().isin(("true", "1"))
    df["trigger"] = _text(df["trigger"], "manual")
    return df


def _audit_row(record: AuditRecord) -> dict[str, Any]:
    return {
        "audit_id": record.audit_id,
        "environment": record.environment,
        "service": record.service,
        "status": record.status.value,
        "trigger": record.trigger,
        "requested_at": record.requested_at,
        "finished_at": record.finished_at,
        "from_version": record.from_version,
        "to_version": record.to_version,
        "dry_run": record.dry_run,
        "failed_check": next((c.name for c in record.checks if not c.passed), None),
    }


# What a report reads of each record (the environment is the key it asks for): what the
# store's day blocks hold.
STORE_FIELDS = BLOCK_FIELDS


def history_from_store(
    store: HistoryStore, environment: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """One environment's records finished in ``[start, end)`` (and each service's last
    deploy before ``start``), read as Arrow columns (day blocks, or one windowed Query)."""
    return _arrow_frame([_store_table(store, environment, start, end)])


def _store_table(store: HistoryStore, environment: str, start: datetime, end: datetime) -> pa.Table:
    table = store.read_window(environment, start, end, STORE_FIELDS)
    log.info("read %d %s history records from %s", table.num_rows, environment, store.table)
    environments = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(table.num_rows, np.int32)), pa.array([environment])
    )
    return table.append_column("environment", environments)


def _arrow_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """The records frame of window reads, built in Arrow: UTC times parsed (a column
    Arrow cannot parse is left to pandas), the categories dictionary-encoded (hashed in
    C++, they come out as pandas categoricals), missing kinds and ids filled."""
    table = pa.concat_tables(tables)
    names = table.column_names
    for column in HISTORY_TIMES:
        if column in names and table.schema.field(column).type == pa.string():
            try:
                times = table.column(column).cast(pa.timestamp("us", tz="UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(names.index(column), column, times)
    for column, default in (("kind", "deploy"), ("record_id", "")):
        if table.column(column).null_count:
            filled = table.column(column).fill_null(default)
            table = table.set_column(names.index(column), column, filled)
    for column in HISTORY_CATEGORIES:  # the store's day blocks hold them encoded already
        if not pa.types.is_dictionary(table.schema.field(column).type):
            encoded = table.column(column).dictionary_encode()
            table = table.set_column(names.index(column), column, encoded)
    return history_frame(table.unify_dictionaries().to_pandas())


def audit_services(
    configured: Mapping[str, Iterable[str]], history: pd.DataFrame
) -> list[tuple[str, str]]:
    """The ``(environment, service)`` pairs whose attempts the reports of ``configured``'s
    environments read: each configured service, and each service of those environments
    the history read shows (one removed from the config keeps its attempts in the
    report while its deploys or rollbacks are in the history read)."""
    pairs = {(env, str(s)) for env, services in configured.items() for s in services}
    seen = history.loc[history["environment"].isin(list(configured)), ["environment", "service"]]
    pairs |= {(str(e), str(s)) for e, s in seen.drop_duplicates().itertuples(index=False)}
    return sorted(pairs)


def audit_from_store(
    store: AuditStore, services: Iterable[tuple[str, str]], since: datetime
) -> pd.DataFrame:
    """The rollback attempts of ``services`` requested at or after ``since`` (a report's
    ``reads_from``): one paged Query of the audit table's by-service index per service,
    not a Scan of the whole table.

    A report counts the attempts that finished in its window (nothing older: the
    unrestored failures' attempts are those of the window too), and every number holds
    with this read: an attempt finishes after its request, and ``since`` lies a whole
    period, and at least 15 days, before the window's start, so an attempt that finished
    in the window is missed only if it ran that long (a process that died, found
    interrupted by a rollback weeks later). Services are those ``audit_services`` lists:
    the report is about the configured services and those its history shows. An attempt
    of a service that is neither is not read, nor counted: such a service was removed
    from the config (a request for it is refused before any audit record) and has not
    been deployed or rolled back since the read's start."""
    pairs = list(services)
    attempts = store.attempts_since(pairs, since)
    log.info(
        "read %d rollback attempts of %d services from %s", len(attempts), len(pairs), store.table
    )
    return audit_frame(attempts)


def read_csv(path: str | os.PathLike[str], columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV export as plain strings (versions like ``42`` stay text, not numbers)."""
    return pd.read_csv(path, dtype=str, usecols=lambda c: c in columns)


def history_from_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return history_frame(read_csv(path, HISTORY_COLUMNS))


def audit_from_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return audit_frame(read_csv(path, AUDIT_COLUMNS))


# -- what the reports read (the metrics report, the receiver's stats) --------------------
def read_history(rt: Runtime, names: list[str], now: pd.Timestamp, days: int) -> pd.DataFrame:
    """The records the reports of ``names`` read: each environment's window (its day
    blocks, and a Query of the environment/time index for days without one), not the
    whole table. The environments are read side by side: much of a read is network,
    decompression and Arrow, outside the GIL."""
    start, end = reads_from(now, days).to_pydatetime(), now.to_pydatetime()
    return _arrow_frame(side_by_side(lambda e: _store_table(rt.history, e, start, end), names))


def read_audit(
    rt: Runtime, names: list[str], now: pd.Timestamp, days: int, history: pd.DataFrame
) -> pd.DataFrame:
    """The rollback attempts the reports of ``names`` read: one Query per service (the
    configured ones and those ``history`` shows) from the start of the reports' read,
    not the whole table."""
    configured = {env: sorted(rt.config.environments[env].services) for env in names}
    since = reads_from(now, days).to_pydatetime()
    return audit_from_store(rt.audit, audit_services(configured, history), since)
