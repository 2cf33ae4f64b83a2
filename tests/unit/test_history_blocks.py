"""Day blocks' pieces: which days a window touches, when a block may be read, and the
Arrow encoding (a day's records come back as they went in, whatever the part size)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from rollback.stores import history_blocks, history_days
from rollback.stores.history_blocks import SCHEMA, UTC_MICROS
from rollback.stores.history_days import Day


def test_a_window_touches_the_utc_days_of_its_ends() -> None:
    # GIVEN a window from 23:30 in New York (03:30 UTC next day) to midnight UTC
    ny = timezone(timedelta(hours=-4))
    start = datetime(2024, 5, 30, 23, 30, tzinfo=ny)
    end = datetime(2024, 6, 2, 0, 0, tzinfo=UTC)
    # THEN its days are the UTC ones, and the end (exclusive) adds no day
    assert history_days.days_between(start, end) == [date(2024, 5, 31), date(2024, 6, 1)]


def test_missing_days_are_grouped_into_runs() -> None:
    days = [date(2024, 6, d) for d in (1, 2, 3, 5, 7, 8)]
    assert list(history_days.spans(days)) == [
        (date(2024, 6, 1), date(2024, 6, 3)),
        (date(2024, 6, 5), date(2024, 6, 5)),
        (date(2024, 6, 7), date(2024, 6, 8)),
    ]


@pytest.mark.parametrize(
    ("day", "readable"),
    [
        (Day(rows=3, block_rows=3, block_parts=2, parts={3: {0: b"a", 1: b"b"}}), True),
        (Day(rows=4, block_rows=3, block_parts=2, parts={3: {0: b"a", 1: b"b"}}), False),
        (Day(rows=3, block_rows=3, block_parts=2, parts={3: {0: b"a"}}), False),
        (Day(rows=3, block_rows=3, block_parts=1, parts={2: {0: b"a"}}), False),
        (Day(rows=None, block_rows=None), False),
    ],
    ids=["current", "a write since", "a part missing", "parts of another count", "no counter"],
)
def test_a_block_is_read_only_when_whole_and_current(day: Day, readable: bool) -> None:
    assert (day.block() is not None) is readable


def test_items_are_sorted_into_counters_and_parts() -> None:
    days: dict[date, Day] = {}
    history_days.read_items(
        [
            {
                "pk": {"S": "\x1fprod"},
                "sk": {"S": "day#2024-06-01"},
                "rows": {"N": "2"},
                "block_rows": {"N": "2"},
                "block_parts": {"N": "1"},
            },  # fmt: skip
            {"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-06-01#2#0"}, "data": {"B": b"x"}},
            {"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-06-01#1#0"}, "data": {"B": b"old"}},
        ],
        days,
    )
    assert days[date(2024, 6, 1)].block() == [b"x"]


def _day(n: int) -> pa.Table:
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    times = [t0 + timedelta(seconds=17 * i) for i in range(n)]
    columns: dict[str, pa.Array] = {}
    for field in SCHEMA:
        if field.type == UTC_MICROS:
            columns[field.name] = pa.array(times[::-1], UTC_MICROS)  # newest first
        else:
            columns[field.name] = pa.array([f"{field.name}-{i}" for i in range(n)])
    columns["kind"] = pa.array(["deploy", "rollback"] * (n // 2) + ["deploy"] * (n % 2))
    columns["service"] = pa.array([f"s{i % 3}" for i in range(n)])
    return pa.table(columns)


@pytest.mark.parametrize("part_bytes", [300_000, 8_000])
def test_a_day_comes_back_as_it_went_in_sorted_by_time(
    part_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_blocks, "PART_BYTES", part_bytes)
    table = _day(2_000)
    blobs = history_blocks.encode(table)
    assert all(len(b) <= part_bytes for b in blobs)
    assert (len(blobs) > 1) is (part_bytes < 100_000)
    back = history_blocks.decode(blobs)
    assert back.schema == SCHEMA
    assert back.to_pydict() == table.sort_by("t").select(SCHEMA.names).to_pydict()


def test_rows_are_split_by_day_and_filtered_by_time() -> None:
    table = _day(10_000)  # 17 s apart: 47 hours from midnight
    days = history_blocks.by_day(table, [date(2024, 6, 1), date(2024, 6, 2), date(2024, 6, 3)])
    assert [t.num_rows for t in days.values()] == [5083, 4917, 0]
    start = datetime(2024, 6, 1, 1, tzinfo=UTC)
    window = history_blocks.between(table, start, start + timedelta(hours=1))
    assert window.num_rows == 212  # 3600 / 17 = 211.8: seconds 3604 ... 7191


def test_the_last_deploy_of_each_service_is_the_latest_one() -> None:
    table = _day(12)  # s0: rows 0 3 6 9 (deploys at 0 6), s1: 1 4 7 10, s2: 2 5 8 11
    found = history_blocks.last_deploys(table, ["s0", "s1", "gone"])
    # the rows are newest first: row 0 is the latest
    assert found["s0"].column("record_id").to_pylist() == ["record_id-0"]
    assert found["s1"].column("record_id").to_pylist() == ["record_id-4"]
    assert "gone" not in found


@pytest.mark.parametrize(
    "blob",
    [b"", b"garbage", history_blocks.MARK + (10).to_bytes(8, "little") + b"not zstd"],
    ids=["empty", "another format", "damaged"],
)
def test_a_part_this_version_cannot_read_is_a_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError):
        history_blocks.decode([blob])


@pytest.mark.parametrize(
    ("chosen", "pool"), [(None, "jemalloc"), ("system", "system"), ("mimalloc", "mimalloc")]
)
def test_the_read_takes_arrows_memory_from_jemalloc_unless_a_pool_is_chosen(
    chosen: str | None, pool: str
) -> None:
    # a fresh process: the pool is the process's, as in `rollback report`
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    code = (
        "import pyarrow as pa\n"
        "from rollback.stores.history_blocks import steady_memory\n"
        "steady_memory(); steady_memory()\n"
        "print(pa.default_memory_pool().backend_name, pa.table({'a': [1]}).nbytes > 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [pool, "True"]
