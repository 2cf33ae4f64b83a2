"""The window read's page decoding: the flat fast path gives what the typed path gives,
and steps aside for anything it cannot decode exactly."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rollback.stores.history import _columns, _flat_page

FIELDS = ("service", "version", "trigger")


def page(*items: dict[str, Any], key: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"Count": len(items), "Items": list(items), "ScannedCount": 9}
    if key is not None:
        body["LastEvaluatedKey"] = key
    return orjson.dumps(body)


def typed_columns(body: bytes) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {f: [] for f in FIELDS}
    _columns(orjson.loads(body)["Items"], FIELDS, columns)
    return columns


def test_flat_page_gives_the_typed_columns_and_key() -> None:
    # GIVEN a page of string attributes, one missing, one empty, unicode, a paging key
    body = page(
        {"service": {"S": "api"}, "version": {"S": "v1 }{\u00e9"}},
        {"service": {"S": "web"}, "version": {"S": ""}, "trigger": {"S": "alarm"}},
        key={"pk": {"S": "prod#api"}, "t": {"S": "2024-01-01T00:00:00.000000+00:00"}},
    )

    # WHEN it is decoded flat
    flat = _flat_page(body)

    # THEN the columns and the paging key are those of the typed decoding
    assert flat is not None
    columns: dict[str, list[Any]] = {f: [] for f in FIELDS}
    _columns(flat["Items"], FIELDS, columns, flat=True)
    assert columns == typed_columns(body)
    assert flat["LastEvaluatedKey"] == orjson.loads(body)["LastEvaluatedKey"]
    assert flat["Count"] == 2


@pytest.mark.parametrize(
    "attribute",
    [
        {"N": "5"},
        {"NULL": True},
        {"BOOL": False},
        {"L": [{"S": "x"}]},
        {"M": {"S": {"S": "x"}}},
        {"S": 'quote " inside'},
        {"S": "backslash at the end \\"},
    ],
)
def test_anything_but_plain_strings_is_decoded_typed(attribute: dict[str, Any]) -> None:
    # GIVEN a page with one attribute the flat path cannot take exactly
    body = page({"service": {"S": "api"}, "version": attribute})

    # WHEN / THEN it steps aside, and the typed path reads the value
    assert _flat_page(body) is None
    columns = typed_columns(body)
    assert columns["service"] == ["api"]
    if "S" in attribute:
        assert columns["version"] == [attribute["S"]]
