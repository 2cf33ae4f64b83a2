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

import pandas as pd
import pyarrow as pa

from rollback.models import AuditRecord, DeploymentRecord
from rollback.stores.audit import AuditStore
from rollback.stores.history import RECORD_FIELDS, HistoryStore, record_to_dict

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
    df = rows.reindex(columns=list(columns))  # missing columns come out empty
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


# What a report reads of each record (the environment is the key it asks for).
STORE_FIELDS = tuple(f for f in HISTORY_COLUMNS if f not in ("environment", "commit_sha"))


def history_from_store(
    store: HistoryStore, environment: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """One environment's records finished in ``[start, end)`` (and each service's last
    deploy before ``start``), read as Arrow columns by one windowed Query; the store's
    UTC times are parsed by Arrow too (a column Arrow cannot parse is left to pandas)."""
    table = store.read_window(environment, start, end, STORE_FIELDS)
    log.info("read %d %s history records from %s", table.num_rows, environment, store.table)
    for column in HISTORY_TIMES:
        if column in table.column_names:
            try:
                times = table.column(column).cast(pa.timestamp("us", tz="UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(table.schema.get_field_index(column), column, times)
    frame = table.to_pandas()
    frame["environment"] = environment
    return history_frame(frame)


def audit_from_store(store: AuditStore) -> pd.DataFrame:
    attempts = store.scan_all()
    log.info("read %d rollback attempts from %s", len(attempts), store.table)
    return audit_frame(attempts)


def read_csv(path: str | os.PathLike[str], columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV export as plain strings (versions like ``42`` stay text, not numbers)."""
    return pd.read_csv(path, dtype=str, usecols=lambda c: c in columns)


def history_from_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return history_frame(read_csv(path, HISTORY_COLUMNS))


def audit_from_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    return audit_frame(read_csv(path, AUDIT_COLUMNS))
