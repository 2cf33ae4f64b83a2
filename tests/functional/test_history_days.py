"""The history's day blocks (against the moto server): a closed day is read from its block
once one is built, and a block is never read once the day holds another record — a late
write, an import, a builder that lost a race, a day written before counters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pyarrow as pa
import pytest

from rollback.models import DeploymentRecord, utcnow
from rollback.stores import history_days
from rollback.stores.history import HistoryStore
from rollback.stores.history_days import BLOCK_FIELDS
from tests.functional.history_records import record as _record

NOW = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
START = NOW - timedelta(days=7)


def _week(prefix: str = "r", per_day: int = 3) -> list[DeploymentRecord]:
    """Records on each of the 9 days before NOW (and two services)."""
    return [
        _record(f"{prefix}{d}-{n}", NOW - timedelta(days=d, hours=n), service=("api", "web")[n % 2])
        for d in range(9)
        for n in range(per_day)
    ]


class Requests:
    """What the store sent: index Queries (records read), day Queries, block writes."""

    def __init__(self, store: HistoryStore) -> None:
        self.calls: list[tuple[str, str | None]] = []
        events = store.client.meta.events
        for op in ("Query", "PutItem", "UpdateItem"):
            events.register(f"before-parameter-build.dynamodb.{op}", self._seen(op))

    def _seen(self, op: str) -> Callable[..., None]:
        def seen(params: dict, **_: object) -> None:
            self.calls.append((op, params.get("IndexName")))

        return seen

    def index_queries(self, index: str = "by-environment-time") -> int:
        return sum(1 for op, i in self.calls if op == "Query" and i == index)

    def writes(self) -> int:
        return sum(1 for op, _ in self.calls if op != "Query")


@pytest.fixture
def store(aws: str) -> HistoryStore:
    history = HistoryStore("hist")
    history.ensure(create=True)
    return history


@pytest.fixture
def requests(store: HistoryStore) -> Iterator[Requests]:
    yield Requests(store)


def _read(store: HistoryStore, start: datetime = START, end: datetime = NOW) -> pa.Table:
    return store.read_window("prod", start, end, BLOCK_FIELDS)


def _ids(table: pa.Table) -> list[str]:
    return sorted(table.column("record_id").to_pylist())


def _counter(day: datetime) -> dict:
    key = history_days.counter_key("prod", day.date())
    return boto3.client("dynamodb").get_item(TableName="hist", Key=key).get("Item", {})


def test_a_closed_day_is_read_from_its_block_after_the_first_read(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN nine days of records, imported (each day counted)
    store.import_many(_week())
    # WHEN the window is read twice
    first = _read(store)
    cold = requests.index_queries()
    requests.calls.clear()
    second = _read(store)
    # THEN the first read read the records and built a block per day; the second read
    # no record at all (every day of the window and its lookback is closed), and both
    # reads give the same rows: the window's, oldest first, then each service's last
    # deploy before it
    assert cold >= 1 and requests.index_queries() == 0 and requests.writes() == 0
    assert first.equals(second)
    in_window = first.column("record_id").to_pylist()[:-2]
    assert sorted(in_window) == sorted(
        r.record_id
        for r in _week()
        if START <= r.finished_at < NOW  # type: ignore[operator]
    )
    assert first.column("record_id").to_pylist()[-2:] == ["r7-2", "r7-1"]  # api, web
    times = first.column("finished_at").to_pylist()[:-2]
    assert times == sorted(times)
    assert first.schema.field("finished_at").type == pa.timestamp("us", tz="UTC")
    counter = _counter(NOW - timedelta(days=3))
    assert counter["rows"] == counter["block_rows"] == {"N": "3"}


def test_a_late_write_to_a_closed_day_is_read_at_once(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN blocks for every day of the window
    store.import_many(_week())
    _read(store)
    # WHEN a deploy finished three days ago is appended now, and another is imported
    late = _record("late", NOW - timedelta(days=3, minutes=5))
    imported = _record("imported", NOW - timedelta(days=5, minutes=5), service="web")
    assert store.append(late) is True
    assert store.import_many([imported]).stored == 1
    requests.calls.clear()
    after = _read(store)
    # THEN both are in the next read (their days' blocks no longer count), which read
    # those two days from the records and built their blocks anew
    assert {"late", "imported"} <= set(after.column("record_id").to_pylist())
    assert requests.index_queries() == 2
    requests.calls.clear()
    again = _read(store)
    assert requests.index_queries() == 0
    assert _ids(again) == _ids(after)
    assert _counter(NOW - timedelta(days=3))["block_rows"] == {"N": "4"}


def test_the_same_record_twice_does_not_move_the_count(store: HistoryStore) -> None:
    # GIVEN a record appended, its day's block built
    store.append(_record("a", NOW - timedelta(days=2)))
    _read(store)
    # WHEN the same record arrives again, by append and by import
    assert store.append(_record("a", NOW - timedelta(days=2))) is False
    assert store.import_many([_record("a", NOW - timedelta(days=2))]).stored == 0
    # THEN the day's count is still 1 and its block is still current
    counter = _counter(NOW - timedelta(days=2))
    assert counter["rows"] == counter["block_rows"] == {"N": "1"}


def test_a_builder_that_lost_a_race_publishes_nothing(store: HistoryStore) -> None:
    # GIVEN a day of two records, read by a builder that will publish late
    day = NOW - timedelta(days=2)
    store.import_many([_record("a", day), _record("b", day - timedelta(hours=1))])
    slow = store._day_items("prod", [day.date()])[day.date()]
    stale = store._read_records("prod", day - timedelta(hours=12), NOW, (*BLOCK_FIELDS, "t"))
    from rollback.stores import history_blocks

    rows = history_blocks.typed(stale)
    assert rows is not None and rows.num_rows == 2
    # WHEN a third record lands, and then the slow builder publishes its two
    store.append(_record("c", day - timedelta(hours=2)))
    store._publish("prod", day.date(), rows, slow)
    # THEN no block was kept, and the read holds all three
    assert "block_rows" not in _counter(day)
    assert {"a", "b", "c"} <= set(_read(store).column("record_id").to_pylist())


def test_a_day_larger_than_an_item_is_kept_in_parts(
    store: HistoryStore, requests: Requests, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN parts of at most 2.5 KB, and 200 records on one day
    monkeypatch.setattr(history_days, "PART_BYTES", 2_500)
    from rollback.stores import history_blocks

    monkeypatch.setattr(history_blocks, "PART_BYTES", 2_500)
    day = NOW - timedelta(days=2)
    store.import_many([_record(f"p{n:03}", day - timedelta(seconds=n)) for n in range(200)])
    # WHEN it is read twice
    first = _read(store)
    requests.calls.clear()
    second = _read(store)
    # THEN the block is in several parts, and the second read (from the parts) is the first
    parts = int(_counter(day)["block_parts"]["N"])
    assert parts > 1
    assert requests.index_queries() == 0
    assert first.equals(second) and first.num_rows == 200


def test_a_damaged_block_is_read_from_the_records_and_built_again(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN a day's block, whose part is then overwritten with junk
    day = NOW - timedelta(days=2)
    store.import_many([_record("a", day), _record("b", day - timedelta(hours=1))])
    first = _read(store)
    key = history_days.part_key("prod", day.date(), 2, 0)
    boto3.client("dynamodb").put_item(TableName="hist", Item=key | {"data": {"B": b"junk"}})
    # WHEN it is read twice
    requests.calls.clear()
    second = _read(store)
    index_reads = requests.index_queries()
    requests.calls.clear()
    third = _read(store)
    # THEN the second read took that day from its records (and kept a good block again),
    # the third from the block, and all three reads agree
    assert index_reads == 1 and requests.index_queries() == 0
    assert first.equals(second) and second.equals(third)


def test_a_day_written_before_counters_gets_one_on_its_first_read(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN two records put by an older version of the store (no day counter)
    day = NOW - timedelta(days=2)
    for record in (_record("old1", day), _record("old2", day - timedelta(hours=1))):
        boto3.client("dynamodb").put_item(TableName="hist", Item=store._item(record))
    assert _counter(day) == {}
    # WHEN it is read, then a record is appended to that day, then it is read again
    first = _read(store)
    counted = _counter(day)
    store.append(_record("new", day - timedelta(hours=2)))
    requests.calls.clear()
    second = _read(store)
    # THEN the first read counted the day and kept its block; the append moved the
    # count past the block, and the second read holds all three records
    assert {"old1", "old2"} <= set(first.column("record_id").to_pylist())
    assert counted["rows"] == counted["block_rows"] == {"N": "2"}
    assert {"old1", "old2", "new"} <= set(second.column("record_id").to_pylist())
    assert requests.index_queries() == 1


def test_today_is_read_from_the_records_and_never_blocked(store: HistoryStore) -> None:
    # GIVEN a record finished an hour ago
    now = utcnow()
    store.append(_record("now", now - timedelta(minutes=1)))
    # WHEN the last day is read twice
    reads = [_read(store, now - timedelta(hours=1), now + timedelta(seconds=1)) for _ in range(2)]
    # THEN both hold it, and today has no block (it is still being written)
    assert all(r.column("record_id").to_pylist() == ["now"] for r in reads)
    key = history_days.counter_key("prod", (now - timedelta(minutes=1)).date())
    item = boto3.client("dynamodb").get_item(TableName="hist", Key=key)["Item"]
    assert item["rows"] == {"N": "1"} and "block_rows" not in item


def test_the_last_deploy_before_the_window_comes_from_a_block_or_a_query(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN api deployed the day before the window (within the lookback), web 20 days
    # before, and both deploy inside the window
    store.import_many(
        [
            _record("api-before", START - timedelta(hours=3)),
            _record("web-before", START - timedelta(days=20), service="web"),
            _record("api-in", NOW - timedelta(days=1)),
            _record("web-in", NOW - timedelta(days=1, hours=1), service="web"),
        ]
    )
    _read(store)
    requests.calls.clear()
    # WHEN it is read again
    table = _read(store)
    # THEN both last deploys before the window come back; only web's needed a Query
    assert table.column("record_id").to_pylist()[-2:] == ["api-before", "web-before"]
    assert requests.index_queries("by-service-time") == 1


@pytest.mark.parametrize("environment", ["\x1fprod", "pro\nd", ""])
def test_a_name_with_control_characters_is_refused(store: HistoryStore, environment: str) -> None:
    # GIVEN a record whose environment could pass for a day item's key, or is a line break
    record = _record("x", NOW, environment=environment)
    # WHEN it is written, THEN it is refused with a one-line reason, and nothing is stored
    with pytest.raises(ValueError, match="control characters"):
        store.append(record)
    assert store.import_many([record]).refused[0][1].startswith("environment must be")
    assert boto3.client("dynamodb").scan(TableName="hist")["Items"] == []


WRITES = ("TransactWriteItems", "BatchWriteItem", "UpdateItem", "PutItem")


def _on_writes(store: HistoryStore, handler: Callable[..., None], on: bool = True) -> None:
    """``handler`` called before each write the store sends (any kind of write)."""
    events = store.client.meta.events
    for op in WRITES:
        name = f"before-parameter-build.dynamodb.{op}"
        events.register(name, handler) if on else events.unregister(name, handler)


def _days_counted_ahead(store: HistoryStore) -> set:
    """The days whose counter is not the number of records the table holds for them
    (read from the index, which builds no block and sets no counter)."""
    first = NOW - timedelta(days=12)
    records = store._records_between("prod", first, NOW + timedelta(days=1), ("t",))
    held: dict[str, int] = {}
    for t in records.column("t").to_pylist():
        held[t[:10]] = held.get(t[:10], 0) + 1
    ahead = set()
    for n in range(13):
        day = (first + timedelta(days=n)).date()
        counted = int(
            _counter(datetime.combine(day, datetime.min.time(), UTC)).get("rows", {"N": "0"})["N"]
        )
        assert counted >= held.get(day.isoformat(), 0), f"{day} counted short of its records"
        if counted != held.get(day.isoformat(), 0):
            ahead.add(day)
    return ahead


def test_an_import_that_dies_leaves_only_the_days_it_was_writing_counted_ahead(
    store: HistoryStore, requests: Requests
) -> None:
    # GIVEN an import of 306 records over ten days, counted and written 40 at a time,
    # which dies before its eighth write (the second chunk's third batch)
    store.import_chunk = 40
    week = _week(per_day=34)
    sent: list[str] = []

    def dies(**kwargs: object) -> None:
        sent.append(str(kwargs["event_name"]).rsplit(".", 1)[-1])
        if sent.count("BatchWriteItem") == 4:
            raise ConnectionError("the import's process died")

    _on_writes(store, dies)
    with pytest.raises(ConnectionError):
        store.import_many(week)
    # THEN every day but those of the chunk it was writing is counted as its records
    ahead = _days_counted_ahead(store)
    assert 1 <= len(ahead) <= 2
    # WHEN the import is run again, and the window read twice
    _on_writes(store, dies, on=False)
    again = store.import_many(week)
    assert again.stored + again.already_present == len(week) and 0 < again.stored < len(week)
    assert _days_counted_ahead(store) == ahead  # the re-run counts only what it writes
    _read(store)
    requests.calls.clear()
    second = _read(store)
    # THEN the second read comes from the blocks but for those days (their records read)
    assert requests.index_queries() == len(list(history_days.spans(sorted(ahead))))
    in_window = sum(1 for r in week if START <= r.finished_at < NOW)  # type: ignore[operator]
    assert second.num_rows == in_window + 2  # and each service's last deploy before it
