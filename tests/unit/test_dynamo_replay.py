"""The benchmark's local DynamoDB (bench/support/dynamo_replay.py) answers the day items'
requests as DynamoDB does: counters from the records, 1 MB pages, binary base64 on the
wire, conditional writes that hold or fail, and no stale replay after a write."""

from __future__ import annotations

import base64
import importlib.util
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pandas as pd
import pytest

from rollback.stores import history_days

SERVER = Path(__file__).resolve().parents[2] / "bench" / "support" / "dynamo_replay.py"
PK = "\x1fprod"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dynamo_replay", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


replay = load()


def records() -> pd.DataFrame:
    rows = [
        ("prod", "api", "a1", "2024-05-01T23:59:59.000000+00:00"),
        ("prod", "api", "a2", "2024-05-01T10:00:00.000000+00:00"),
        ("prod", "web", "a3", "2024-05-02T00:00:00.000000+00:00"),
        ("staging", "api", "a4", "2024-05-01T08:00:00.000000+00:00"),
    ]
    frame = pd.DataFrame(rows, columns=["environment", "service", "record_id", "t"])
    frame["pk"] = frame["environment"] + "#" + frame["service"]
    frame["sk"] = frame["record_id"]
    frame["finished_at"] = frame["t"]
    frame["kind"] = "deploy"
    return frame


def call(server: Any, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, body = server.handle(f"DynamoDB_20120810.{operation}", orjson.dumps(request))
    return status, orjson.loads(body)


def day_query(server: Any, start: Any = None, a: str = "day#2024-05-01") -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": "hist",
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {
            ":p": {"S": PK},
            ":a": {"S": a},
            ":b": {"S": "day#2024-05-09#~"},
        },
    }
    if start is not None:
        request["ExclusiveStartKey"] = start
    status, page = call(server, "Query", request)
    assert status == 200, page
    return page


def publish(server: Any, day: str, rows: int, condition: str) -> tuple[int, dict[str, Any]]:
    return call(
        server,
        "UpdateItem",
        {
            "TableName": "hist",
            "Key": {"pk": {"S": PK}, "sk": {"S": f"day#{day}"}},
            "UpdateExpression": "SET #rows = :n, block_rows = :n, block_parts = :k, "
            "expires_at = :x",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#rows": "rows"},
            "ExpressionAttributeValues": {
                ":n": {"N": str(rows)},
                ":k": {"N": "1"},
                ":x": {"N": "99"},
            },
        },
    )


def put_part(server: Any, sk: str, data: bytes) -> int:
    item = {"pk": {"S": PK}, "sk": {"S": sk}, "data": {"B": base64.b64encode(data).decode()},
            "expires_at": {"N": "99"}}  # fmt: skip
    status, _ = call(server, "PutItem", {"TableName": "hist", "Item": item})
    return status


def test_the_table_starts_with_each_environment_days_counters() -> None:
    # GIVEN records of prod on two UTC days (one a second before midnight) and staging
    server = replay.Server(records())

    # WHEN prod's days are queried
    page = day_query(server)

    # THEN each day counts its records, expiring as the store's writes set it
    expires = history_days.expires_at(date(2024, 5, 1), 90)
    assert page["Items"] == [
        {"pk": {"S": PK}, "sk": {"S": "day#2024-05-01"}, "rows": {"N": "2"},
         "expires_at": {"N": str(expires)}},
        {"pk": {"S": PK}, "sk": {"S": "day#2024-05-02"}, "rows": {"N": "1"},
         "expires_at": {"N": str(expires + 86400)}},
    ]  # fmt: skip
    assert page["Count"] == page["ScannedCount"] == 2
    assert "LastEvaluatedKey" not in page


def test_day_pages_end_where_the_items_read_reach_1_mb_and_binary_is_base64() -> None:
    # GIVEN six parts of 300,000 raw bytes each (400,000 base64 characters)
    server = replay.Server(records())
    blobs = [bytes([n]) * 300_000 for n in range(6)]
    for n, blob in enumerate(blobs):
        assert put_part(server, f"day#2024-05-01#2#{n}", blob) == 200

    # WHEN the days are read page by page
    first = day_query(server)
    second = day_query(server, first["LastEvaluatedKey"])

    # THEN the first page holds the counter and parts until 1 MB of raw bytes is passed
    # (the counter and three parts are under it, the fourth part crosses it)
    assert [i["sk"]["S"] for i in first["Items"]][:2] == ["day#2024-05-01", "day#2024-05-01#2#0"]
    assert first["Count"] == 5
    assert first["LastEvaluatedKey"] == {"pk": {"S": PK}, "sk": {"S": "day#2024-05-01#2#3"}}
    assert [i["sk"]["S"] for i in second["Items"]] == [
        "day#2024-05-01#2#4", "day#2024-05-01#2#5", "day#2024-05-02",
    ]  # fmt: skip
    assert "LastEvaluatedKey" not in second
    parts = [i for i in first["Items"] + second["Items"] if "data" in i]
    assert [base64.b64decode(i["data"]["B"]) for i in parts] == blobs


def test_publishing_holds_only_while_the_counter_is_unchanged() -> None:
    server = replay.Server(records())

    # WHEN a block of 3 rows is published on a day counting 2, then of the 2 it counts
    stale = publish(server, "2024-05-01", 3, "#rows = :n")
    current = publish(server, "2024-05-01", 2, "#rows = :n")
    # and a day without a counter is claimed twice
    claimed = publish(server, "2024-05-05", 4, "attribute_not_exists(pk)")
    again = publish(server, "2024-05-05", 4, "attribute_not_exists(pk)")

    # THEN the stale and repeated claims fail as DynamoDB fails them, the others hold
    failed = {
        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "message": "The conditional request failed",
    }
    assert stale == (400, failed)
    assert again == (400, failed)
    assert current == (200, {})
    assert claimed == (200, {})
    items = {i["sk"]["S"]: i for i in day_query(server)["Items"]}
    assert items["day#2024-05-01"]["block_rows"] == {"N": "2"}
    assert items["day#2024-05-01"]["expires_at"] == {"N": "99"}
    assert items["day#2024-05-05"]["rows"] == items["day#2024-05-05"]["block_rows"] == {"N": "4"}


def test_a_write_drops_the_recorded_day_answers_it_changes() -> None:
    # GIVEN a day Query answered (and recorded)
    server = replay.Server(records())
    before = day_query(server)

    # WHEN a part is written, then the same Query is sent again
    assert put_part(server, "day#2024-05-01#2#0", b"block") == 200
    after = day_query(server)

    # THEN the answer holds the part (not the recorded bytes of before)
    assert len(after["Items"]) == len(before["Items"]) + 1


def test_a_reset_leaves_the_counters_and_no_block() -> None:
    # GIVEN a block published on a day, and the days read (recorded)
    server = replay.Server(records())
    assert put_part(server, "day#2024-05-01#2#0", b"block") == 200
    assert publish(server, "2024-05-01", 2, "#rows = :n")[0] == 200
    with_block = day_query(server)

    # WHEN the benchmark resets the days
    assert server.handle("ReplayBench.ResetDays", b"{}") == (200, b"{}")

    # THEN the days read as at the start: the counters, no part, no block
    after = day_query(server)
    assert len(with_block["Items"]) == 3
    assert [i["sk"]["S"] for i in after["Items"]] == ["day#2024-05-01", "day#2024-05-02"]
    assert all("block_rows" not in i for i in after["Items"])
    assert after == day_query(replay.Server(records()))


@pytest.mark.parametrize(
    ("operation", "request_"),
    [
        ("PutItem", {"TableName": "hist", "Item": {"pk": {"S": "prod#api"}, "sk": {"S": "x"}}}),
        ("PutItem", {"TableName": "hist", "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": {"pk": {"S": PK}, "sk": {"S": "day#2024-05-01#1#0"}}}),
        ("UpdateItem", {"TableName": "hist", "Key": {"pk": {"S": PK}, "sk": {"S": "day#x"}},
                        "UpdateExpression": "ADD #rows :n",
                        "ExpressionAttributeNames": {"#rows": "rows"},
                        "ExpressionAttributeValues": {":n": {"N": "1"}}}),
        ("Query", {"TableName": "hist", "KeyConditionExpression": "pk = :p AND sk > :a",
                   "ExpressionAttributeValues": {":p": {"S": PK}, ":a": {"S": "day#"},
                                                 ":b": {"S": "day#~"}}}),
        ("DeleteItem", {"TableName": "hist", "Key": {"pk": {"S": PK}, "sk": {"S": "day#x"}}}),
    ],
)  # fmt: skip
def test_requests_it_does_not_model_are_refused(operation: str, request_: dict) -> None:
    # WHEN a record is put, a conditional put, another update, another base-table Query
    # or another operation is sent
    server = replay.Server(records())
    status, answer = call(server, operation, request_)

    # THEN DynamoDB's validation error comes back, and nothing was written
    assert status == 400
    assert answer["__type"] == "com.amazon.coral.validate#ValidationException"
    assert [i["sk"]["S"] for i in day_query(server, a="day#")["Items"]] == [
        "day#2024-05-01", "day#2024-05-02",
    ]  # fmt: skip
