"""Day blocks as Arrow: encode a day's records, decode blocks, and the column work of
the window read (``history_days`` has the layout and why a block can be trusted)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, date, datetime, time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from rollback.stores.history_days import BLOCK_FIELDS, PART_BYTES

TIME_FIELDS = ("committed_at", "started_at", "finished_at", "t")
UTC_MICROS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [(f, UTC_MICROS if f in TIME_FIELDS else pa.string()) for f in (*BLOCK_FIELDS, "t")]
)
_WRITE = pa.ipc.IpcWriteOptions(compression="lz4")


def encode(table: pa.Table) -> list[bytes]:
    """A day's records (``SCHEMA``) as IPC streams, each under ``PART_BYTES``."""
    table = table.select(SCHEMA.names).cast(SCHEMA).sort_by("t")
    parts = 1
    while True:
        size = -(-table.num_rows // parts) or 1
        blobs = [_stream(table.slice(i, size)) for i in range(0, max(table.num_rows, 1), size)]
        if max(len(b) for b in blobs) <= PART_BYTES or size == 1:
            return blobs  # (a single record over the limit: DynamoDB refuses the part)
        parts *= 2


def _stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, SCHEMA, options=_WRITE) as writer:
        writer.write_table(table)
    return sink.getvalue()


def decode(blobs: Iterable[bytes]) -> pa.Table:
    tables = [ipc.open_stream(b).read_all() for b in blobs]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def typed(table: pa.Table) -> pa.Table | None:
    """Window-read columns (text, as the index Query gives them) in ``SCHEMA``'s types;
    None when a time is not the store's UTC text (a record written before the store
    normalized times)."""
    try:
        return table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        return None


def between(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    t = table.column("t")
    keep = pc.and_(
        pc.greater_equal(t, pa.scalar(start, UTC_MICROS)), pc.less(t, pa.scalar(end, UTC_MICROS))
    )
    return table.filter(keep)


def by_day(table: pa.Table, days: Iterable[date]) -> dict[date, pa.Table]:
    """A typed table's rows by the UTC day of ``t``, for each of ``days`` (a day without
    rows: an empty table)."""
    out = {}
    day_of_t = pc.floor_temporal(table.column("t"), unit="day")
    for day in days:
        midnight = pa.scalar(datetime.combine(day, time(), UTC), UTC_MICROS)
        out[day] = table.filter(pc.equal(day_of_t, midnight))
    return out


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    tables = list(tables)
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def last_deploys(table: pa.Table, services: Iterable[str]) -> dict[str, pa.Table]:
    """For each of ``services``, the row of its latest finished deploy in ``table`` (one
    row), for those that have one."""
    deploys = table.filter(
        pc.and_(pc.equal(table.column("kind"), "deploy"), pc.is_valid(table.column("finished_at")))
    ).sort_by([("t", "descending")])
    wanted = set(services)
    found: dict[str, pa.Table] = {}
    for n, service in enumerate(deploys.column("service").to_pylist()):
        if service in wanted and service not in found:
            found[service] = deploys.slice(n, 1)
            if len(found) == len(wanted):
                break
    return found
