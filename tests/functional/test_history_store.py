"""The deployment history store tells the truth (against the moto server): one record per
record id whatever its UTC offset, honest import counts, newest first by time, a TTL
from the deploy, impossible records refused, and the reports' window read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import boto3
import pandas as pd
import pytest

from reports.load import history_from_store, records_frame
from rollback.models import DeploymentRecord
from rollback.stores.history import HistoryStore, record_from_dict
from tests.functional.history_records import record as _record

PARIS = timezone(timedelta(hours=2))
NY = timezone(timedelta(hours=-4))


@pytest.fixture
def store(aws: str) -> HistoryStore:
    history = HistoryStore("hist")
    history.ensure(create=True)
    return history


def _all_items() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName="hist")["Items"]


def _items() -> list[dict]:
    """The records (not the day counters and blocks)."""
    return [i for i in _all_items() if not i["pk"]["S"].startswith("\x1f")]


def test_the_same_record_with_another_utc_offset_is_stored_once(store: HistoryStore) -> None:
    # GIVEN a deploy recorded in UTC
    utc = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    store.append(_record("r1", utc))
    # WHEN the same record id arrives again written in Paris time, by append and import
    again = store.append(_record("r1", utc.astimezone(PARIS)))
    result = store.import_many([_record("r1", utc.astimezone(NY))])
    # THEN the table holds it once, with UTC times, and both writes say so
    assert again is False
    assert (result.stored, result.already_present) == (0, 1)
    items = _items()
    assert len(items) == 1
    assert items[0]["finished_at"]["S"] == "2024-06-01T09:00:00.000000+00:00"
    assert [r.record_id for r in store.query("prod")] == ["r1"]


def test_import_counts_what_was_stored(store: HistoryStore) -> None:
    # GIVEN two records already in the table
    t = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    store.import_many([_record("a", t), _record("b", t + timedelta(hours=1))])
    # WHEN a file of six lines is imported: a and b again (b in another offset), c twice,
    # d, and e finishing before it starts
    bad = DeploymentRecord(
        environment="prod",
        service="api",
        version="v-e",
        status="success",
        started_at=t,
        finished_at=t - timedelta(seconds=5),
        record_id="e",
    )
    result = store.import_many(
        [
            _record("a", t),
            _record("b", (t + timedelta(hours=1)).astimezone(PARIS)),
            _record("c", t + timedelta(hours=2)),
            _record("c", t + timedelta(hours=2)),
            _record("d", t + timedelta(hours=3)),
            bad,
        ]
    )
    # THEN stored counts only what was written; the rest is named
    assert result.stored == 2
    assert result.already_present == 3
    assert [n for n, _ in result.refused] == [5]
    assert "before started_at" in result.refused[0][1]
    assert str(result) == "2 stored, 3 already present, 1 refused"
    assert len(_items()) == 4


def test_newest_first_is_by_time_not_by_text(store: HistoryStore) -> None:
    # GIVEN records whose local texts sort differently from their instants
    base = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    store.import_many(
        [
            _record("early-paris", (base - timedelta(hours=1)).astimezone(PARIS)),  # 10:00+02
            _record("late-utc", base),  # 09:00Z
            _record("middle-ny", (base - timedelta(minutes=30)).astimezone(NY)),  # 04:30-04
            _record("other", base + timedelta(hours=1), service="web"),
        ]
    )
    # WHEN the service's and the environment's history are read
    by_service = [r.record_id for r in store.query("prod", "api")]
    by_env = [r.record_id for r in store.query("prod", limit=3)]
    # THEN both are newest first by instant
    assert by_service == ["late-utc", "middle-ny", "early-paris"]
    assert by_env == ["other", "late-utc", "middle-ny"]


def test_ttl_runs_from_the_deploys_finish(store: HistoryStore) -> None:
    # GIVEN a deploy that finished on 2026-01-01, written today
    finished = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    store.append(_record("old", finished))
    # THEN it expires 90 days after it finished, not 90 days after the write
    expires = int(_items()[0]["expires_at"]["N"])
    assert expires == int((finished + timedelta(days=90)).timestamp())


def test_retention_is_configurable(aws: str) -> None:
    store = HistoryStore("hist", retention_days=30)
    store.ensure(create=True)
    finished = datetime(2026, 1, 1, tzinfo=UTC)
    store.append(_record("x", finished))
    assert int(_items()[0]["expires_at"]["N"]) == int(finished.timestamp()) + 30 * 86400


def test_a_negative_duration_is_refused() -> None:
    # GIVEN an import line that finishes before it starts
    line = {
        "environment": "prod",
        "service": "api",
        "version": "v1",
        "status": "success",
        "started_at": "2024-06-01T10:00:00+02:00",
        "finished_at": "2024-06-01T07:59:00Z",
    }
    # THEN it is refused, naming both times in UTC
    with pytest.raises(
        ValueError, match="finished_at 2024-06-01T07:59:00.000000\\+00:00 is before"
    ):
        record_from_dict(line)
    # AND an equal start and finish is fine
    record_from_dict({**line, "finished_at": "2024-06-01T08:00:00Z"})


def test_append_refuses_a_negative_duration(store: HistoryStore) -> None:
    t = datetime(2024, 6, 1, tzinfo=UTC)
    bad = DeploymentRecord(
        environment="prod",
        service="api",
        version="v1",
        status="success",
        started_at=t,
        finished_at=t - timedelta(seconds=1),
    )
    with pytest.raises(ValueError):
        store.append(bad)
    assert _items() == []


def test_get_finds_one_record_by_id(store: HistoryStore) -> None:
    t = datetime(2024, 6, 1, tzinfo=UTC)
    store.import_many([_record("a", t), _record("b", t, service="web")])
    places = [("prod", "api"), ("prod", "web"), ("staging", "api")]
    found = store.get("b", places)
    assert found is not None and found.service == "web"
    assert store.get("zzz", places) is None


def test_window_read_returns_the_window_and_each_services_last_deploy_before(
    store: HistoryStore,
) -> None:
    # GIVEN api deploys 10 and 3 days before now, a web deploy 20 days before, and
    # a staging record inside the window
    now = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    store.import_many(
        [
            _record("api-old", now - timedelta(days=12)),
            _record("api-before", (now - timedelta(days=10)).astimezone(PARIS)),
            _record("api-in", now - timedelta(days=3)),
            _record("web-before", now - timedelta(days=20), service="web"),
            _record("rb", now - timedelta(days=2), service="web", kind="rollback"),
            _record("later", now + timedelta(hours=1)),
            _record("stg", now - timedelta(days=1), environment="staging"),
        ]
    )
    # WHEN the last 7 days of prod are read
    fields = ("service", "record_id", "finished_at", "kind")
    columns = store.read_window("prod", now - timedelta(days=7), now, fields)
    # THEN the window's records oldest first, then each seen service's last deploy before it
    assert columns.column("record_id").to_pylist() == ["api-in", "rb", "api-before", "web-before"]
    assert columns.column("finished_at")[2].as_py() == datetime(2024, 5, 22, 9, 0, tzinfo=UTC)


def test_window_pages_are_parsed_by_arrow_and_give_the_records_frame(store: HistoryStore) -> None:
    # GIVEN records of two services, one rollback with a trigger, text that needs
    # escaping, and more than one page (a Limit of 2 per page)
    now = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    records = [
        _record(
            "a",
            now - timedelta(days=3),
            version='v"1\\ }]',
            committed_at=(now - timedelta(days=4)).astimezone(NY),
        ),
        _record("b", (now - timedelta(days=2)).astimezone(PARIS), service="web"),
        _record("c", now - timedelta(days=1), kind="rollback", trigger="alarm", from_version="v2"),
        _record("d", now - timedelta(hours=1), status="failed"),
    ]
    store.import_many(records)
    seen: list[bool] = []
    indexed: list[bool] = []
    store.client.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: seen.append("ArrowItems" in parsed)
    )

    def small_pages(params: dict, **_: object) -> None:
        params.setdefault("Limit", 2)
        indexed.append("IndexName" in params)

    store.client.meta.events.register("before-parameter-build.dynamodb.Query", small_pages)
    # WHEN the reports read the window of the last 7 days
    frame = history_from_store(store, "prod", now - timedelta(days=7), now)
    # THEN every page of the window's records came through Arrow, and the frame is the
    # one built from the records themselves (less commit_sha, which no report reads)
    pages = [arrow for arrow, index in zip(seen, indexed, strict=True) if index]
    assert pages and all(pages)
    expected = records_frame(records).drop(columns="commit_sha")
    expected = expected.sort_values("record_id", ignore_index=True)
    got = frame.sort_values("record_id", ignore_index=True)[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_categorical=False)
