"""Day blocks as Arrow: encode a day's records, decode blocks, and the column work of
the window read (``history_days`` has the layout and why a block can be trusted)."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from rollback.stores.history_days import BLOCK_FIELDS, PART_BYTES, Day, start_of

TIME_FIELDS = ("committed_at", "started_at", "finished_at", "t")
# Few distinct values: dictionary-encoded once, when the block is built, they reach
# pandas as categoricals with no hashing at read time.
CATEGORY_FIELDS = ("service", "status", "kind", "trigger")
UTC_MICROS = pa.timestamp("us", tz="UTC")
CATEGORY = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema(
    [
        (f, UTC_MICROS if f in TIME_FIELDS else CATEGORY if f in CATEGORY_FIELDS else pa.string())
        for f in (*BLOCK_FIELDS, "t")
    ]
)
_PLAIN = pa.schema([(f.name, pa.string() if f.type == CATEGORY else f.type) for f in SCHEMA])
# A part: this mark, the IPC stream's size (8 bytes, little-endian), then the stream
# compressed whole by zstd (a whole part compresses to ~55 % of per-buffer lz4, and the
# bytes are what DynamoDB's JSON, base64 and the network cost; it decodes as fast).
MARK = b"RBD1"
_ZSTD = pa.Codec("zstd", compression_level=3)


@functools.cache  # once a process: every read calls it, from its environments' threads
def steady_memory() -> None:
    """Arrow's buffers from jemalloc, unless ``ARROW_DEFAULT_MEMORY_POOL`` names a pool.
    pyarrow's default, mimalloc, asks the kernel for transparent huge pages; on a VM
    their first touch is at random several times slower (a fresh process's 1M-record
    read took 0.19 s or 0.3-0.6 s, its kernel time 0.06 s or 0.47 s; from jemalloc,
    0.21-0.23 s in ten runs). A build without jemalloc keeps its default."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)


def encode(table: pa.Table) -> list[bytes]:
    """A day's records (``SCHEMA``) as IPC streams, each under ``PART_BYTES``."""
    # text first: each part then carries only the dictionary of its own values
    table = table.select(SCHEMA.names).cast(_PLAIN).sort_by("t")
    parts = 1
    while True:
        size = -(-table.num_rows // parts) or 1
        blobs = [_stream(table.slice(i, size)) for i in range(0, max(table.num_rows, 1), size)]
        if max(len(b) for b in blobs) <= PART_BYTES or size == 1:
            return blobs  # (a single record over the limit: DynamoDB refuses the part)
        parts *= 2


def _stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table.cast(SCHEMA))
    raw = sink.getvalue()
    return MARK + len(raw).to_bytes(8, "little") + _ZSTD.compress(raw, asbytes=True)


def decode(blobs: Iterable[bytes]) -> pa.Table:
    """A block's parts as one table; ValueError for a part this version cannot read."""
    return concat(_part(b) for b in blobs)


def _part(blob: bytes) -> pa.Table:
    if blob[: len(MARK)] != MARK:
        raise ValueError("not a day block part of this version")
    size = int.from_bytes(blob[len(MARK) : len(MARK) + 8], "little")
    try:
        raw = _ZSTD.decompress(blob[len(MARK) + 8 :], decompressed_size=size)
        table = ipc.open_stream(raw).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"a damaged day block part: {exc}") from None
    if table.schema != SCHEMA:
        raise ValueError("a day block part of another schema")
    return table


def held_blocks(
    held: dict[date, Day], closed: Iterable[date]
) -> tuple[list[tuple[datetime, datetime, pa.Table]], list[date]]:
    """The closed days' current blocks as (from, to, rows), and the days without one
    (no block, a stale one, or one this version cannot read)."""
    pieces, missing = [], []
    for day in closed:
        blobs = held[day].block() if day in held else None
        try:
            rows = None if blobs is None else decode(blobs)
        except ValueError:
            rows = None
        if rows is None:
            missing.append(day)
        else:
            pieces.append((start_of(day), start_of(day + timedelta(days=1)), rows))
    return pieces, missing


def typed(table: pa.Table) -> pa.Table | None:
    """Window-read columns (text, as the index Query gives them) in ``SCHEMA``'s types
    (UTC times, categories as dictionaries);
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
    rows: an empty table). Rows in time order (as the index Query gives them) are cut
    into slices, not filtered."""
    micros = table.column("t").cast(pa.int64()).to_numpy(zero_copy_only=False)
    if len(micros) > 1 and (np.diff(micros) < 0).any():
        table = table.sort_by("t")
        micros = np.sort(micros)
    out = {}
    for day in days:
        first, after = (
            int(np.searchsorted(micros, _micros(day + timedelta(days=n)), side="left"))
            for n in (0, 1)
        )
        out[day] = table.slice(first, after - first)
    return out


def _micros(day: date) -> int:
    return int(start_of(day).timestamp()) * 1_000_000


def clip(
    pieces: Iterable[tuple[datetime, datetime, pa.Table]], start: datetime, end: datetime
) -> pa.Table:
    """The rows of ``pieces`` (each the rows of its ``[from, to)``, none overlapping)
    whose ``t`` is in ``[start, end)``, in time order: a piece inside taken whole, one
    across an edge filtered."""
    out = []
    for lo, hi, table in sorted(pieces, key=lambda p: p[0]):
        if hi <= start or lo >= end:
            continue
        out.append(table if start <= lo and hi <= end else between(table, start, end))
    return concat(out)


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    tables = list(tables)
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def last_deploys(table: pa.Table, services: Iterable[str]) -> dict[str, pa.Table]:
    """For each of ``services``, the row of its latest finished deploy in ``table`` (one
    row), for those that have one."""
    deploys = table.filter(
        pc.and_(pc.equal(table.column("kind"), "deploy"), pc.is_valid(table.column("finished_at")))
    ).sort_by([("t", "descending")])
    names = deploys.column("service").cast(pa.string())
    found: dict[str, pa.Table] = {}
    for service in services:
        first = pc.index(names, service).as_py()  # the first row of it: its latest
        if first >= 0:
            found[service] = deploys.slice(first, 1)
    return found
