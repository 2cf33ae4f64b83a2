"""The window read's page decoding: Arrow's parse of a page gives what the typed path
gives, and steps aside for anything that is not a page of plain strings."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from rollback.stores.history_pages import _take_items, arrow_page, reading_days, typed_table

FIELDS = ("service", "version", "trigger")
KEYS = ("pk", "sk", "t", "environment")


def page(*items: dict[str, Any], key: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"Count": len(items), "Items": list(items), "ScannedCount": 9}
    if key is not None:
        body["LastEvaluatedKey"] = key
    return orjson.dumps(body | extra)


def typed_columns(body: bytes) -> dict[str, list[Any]]:
    return typed_table(orjson.loads(body)["Items"], FIELDS).to_pydict()


def test_arrow_page_gives_the_typed_columns_and_the_rest_of_the_answer() -> None:
    # GIVEN a page of string attributes: one missing, one empty, unicode, JSON escapes
    # (quote, backslash, newline), braces and brackets inside values, a paging key
    body = page(
        {"service": {"S": "api"}, "version": {"S": 'v1 }{"S":\u00e9 \U0001f600'}},
        {"service": {"S": "web"}, "version": {"S": ""}, "trigger": {"S": "alarm"}},
        {"service": {"S": 'a"b\\'}, "version": {"S": "line\nnext}],{"}},
        key={"pk": {"S": "prod#api"}, "t": {"S": "2024-01-01T00:00:00.000000+00:00"}},
    )

    # WHEN Arrow parses it
    parsed = arrow_page(body, FIELDS, KEYS)

    # THEN the columns are those of the typed decoding, and botocore gets the rest as sent
    assert parsed is not None
    table, rest = parsed
    assert table.to_pydict() == typed_columns(body)
    assert table.column("version").to_pylist()[0] == 'v1 }{"S":\u00e9 \U0001f600'
    assert rest == {k: v for k, v in orjson.loads(body).items() if k != "Items"}


def test_an_empty_page_is_an_empty_table() -> None:
    parsed = arrow_page(page(), FIELDS, KEYS)
    assert parsed is not None
    assert parsed[0].num_rows == 0 and parsed[0].column_names == list(FIELDS)
    assert parsed[1] == {"Count": 0, "ScannedCount": 9}


@pytest.mark.parametrize(
    ("attribute", "text"),
    [
        ({"N": "5"}, "5"),
        ({"N": "-1.50"}, "-1.50"),
        ({"NULL": True}, None),
        ({"BOOL": False}, "False"),
        ({"L": [{"S": "x"}]}, "['x']"),
        ({"M": {"S": {"S": "x"}}}, "{'S': 'x'}"),
        ({"S": "x", "N": "1"}, "x"),
    ],
)
def test_anything_but_plain_strings_is_decoded_typed_as_text(
    attribute: dict[str, Any], text: str | None
) -> None:
    # GIVEN a page with one attribute that is not a plain string
    body = page({"service": {"S": "api"}, "version": attribute})

    # WHEN / THEN Arrow steps aside, and the typed path reads the value as text
    assert arrow_page(body, FIELDS, KEYS) is None
    assert typed_columns(body) == {"service": ["api"], "version": [text], "trigger": [None]}


@pytest.mark.parametrize(
    "body",
    [
        # an attribute that was not asked for
        page({"service": {"S": "api"}, "image_tag": {"S": "x"}}),
        # a member of the answer this reader does not know
        page({"service": {"S": "api"}}, ConsumedCapacity={"CapacityUnits": 1}),
        # a key attribute of another table
        page({"service": {"S": "api"}}, key={"id": {"S": "1"}}),
        # a count that disagrees with the items
        page({"service": {"S": "api"}}, Count=2),
        # no Items at all, a null item, two answers on two lines, not JSON
        orjson.dumps({"Count": 0}),
        orjson.dumps({"Items": [None], "Count": 1}),
        page({"service": {"S": "a"}}) + b"\n" + page({"service": {"S": "b"}}),
        b'{"Items":[{"service":{"S":"a"}}',
        # the same attribute twice in an item
        b'{"Items":[{"service":{"S":"a"},"service":{"S":"b"}}],"Count":1}',
    ],
)
def test_pages_of_another_shape_are_left_to_the_typed_path(body: bytes) -> None:
    assert arrow_page(body, FIELDS, KEYS) is None


# -- the day items' Query: taken over only where it gives what botocore gives ------------


def botocore_items(body: bytes) -> list[dict[str, Any]]:
    """botocore's own parse of a Query answer's items."""
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("dynamodb")
    shape = model.operation_model("Query").output_shape
    answer = {"body": body, "headers": {}, "status_code": 200}
    return list(create_parser("json").parse(answer, shape)["Items"])


def taken_over(body: bytes) -> tuple[list[dict[str, Any]] | None, bytes]:
    """What the page hook leaves of a day items' answer: its items, and the body left
    for botocore."""
    response: dict[str, Any] = {"body": body, "headers": {}, "status_code": 200}
    custom: dict[str, Any] = {}
    with reading_days():
        _take_items(response, custom)
    return custom.get("RawItems"), response["body"]


def test_day_items_are_botocores_items_with_their_binary_decoded() -> None:
    # GIVEN a day's counter and its part, as DynamoDB sends them (binary as base64),
    # one binary value with a line break in its base64 (botocore's decoder skips it)
    blob = bytes(range(256)) * 40
    text = base64.b64encode(blob).decode()
    body = page(
        {"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-05-01"}, "rows": {"N": "12"},
         "flag": {"BOOL": True}, "none": {"NULL": True}},
        {"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-05-01#12#0"}, "data": {"B": text}},
        {"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-05-01#12#1"},
         "data": {"B": text[:76] + "\n" + text[76:]}},
        key={"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-05-01#12#1"}},
    )  # fmt: skip

    # WHEN the hook takes the page over
    items, rest = taken_over(body)

    # THEN its items are botocore's, binary as bytes, and botocore gets the rest
    assert items is not None
    assert items == botocore_items(body)
    assert items[1]["data"]["B"] == blob == items[2]["data"]["B"]
    assert orjson.loads(rest) == {k: v for k, v in orjson.loads(body).items() if k != "Items"}


@pytest.mark.parametrize(
    "attribute",
    [
        {"M": {"inner": {"B": "AAEC"}}},  # botocore decodes binary inside a map
        {"BS": ["AAEC"]},
        {"L": [{"S": "x"}]},
        {"B": "not base64!"},
        {"B": 5},
        {"S": "x", "N": "1"},
    ],
)
def test_day_items_of_any_other_shape_are_left_to_botocore(attribute: dict[str, Any]) -> None:
    body = page({"pk": {"S": "\x1fprod"}, "sk": {"S": "day#2024-05-01"}, "odd": attribute})
    items, rest = taken_over(body)
    assert items is None and rest == body


def test_pages_are_left_alone_outside_a_read() -> None:
    response: dict[str, Any] = {"body": page(), "headers": {}, "status_code": 200}
    custom: dict[str, Any] = {}
    _take_items(response, custom)
    assert custom == {} and response["body"] == page()
