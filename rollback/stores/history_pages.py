"""How the history's window read decodes DynamoDB Query pages: into Arrow columns.

A page whose items hold only string attributes of the projected fields (every page a
report reads) is parsed by Arrow's JSON reader straight from the wire bytes, against the
exact shape of such a page: ``Items`` a list of ``{field: {"S": text}}``, ``Count``,
``ScannedCount``, ``LastEvaluatedKey`` of the key attributes. Anything else in the page
(a number, a NULL, an attribute not asked for, another member) is a parse error, and
that page is decoded typed instead (orjson, then column by column, each value as text).
One C++ pass per page and no Python object per value: the columns go on to pandas as
they are.

The day items' Query (``reading_days``: counters and block parts) is taken over too: its
items are parsed by orjson as botocore would give them, their binary attributes decoded
by pybase64 (SIMD: ~1 ms for the 12.6 MB of a 1M-record report's blocks, where the
standard library's base64 takes ~35 ms).

botocore still parses what is left of the answer (``LastEvaluatedKey``, the counts,
errors); only ``Items`` is taken over, and only in a thread that is ``reading``.
"""

from __future__ import annotations

import base64
import binascii
import gc
import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pybase64

from rollback.stores._dynamo import from_item

_STRING = pa.struct([("S", pa.string())])
_TEXT = itemgetter("S")
_ABSENT = {"S": None}  # an attribute the item lacks reads as None


class _Reading(threading.local):
    """The fields and key attributes of the Query this thread is sending (None: this
    thread is not reading a window, and the client's answers are botocore's own)."""

    fields: tuple[str, ...] | None = None
    keys: tuple[str, ...] = ()
    days: bool = False  # the day items' Query: items as botocore's, binary decoded here


_READING = _Reading()


def register(client: Any) -> None:
    """Register the page hook on ``client`` (idempotent). It acts only inside
    ``reading``, in that thread: other users of the client get botocore's answers."""
    client.meta.events.register(
        "before-parse.dynamodb.Query", _take_items, unique_id="rollback-history-pages"
    )


@contextmanager
def reading(fields: Sequence[str], keys: Sequence[str]) -> Iterator[None]:
    """Query answers in this thread come with their items as a table of ``fields``
    (``keys``: the attributes a ``LastEvaluatedKey`` can hold). The cyclic garbage
    collector is off meanwhile: a page decoded typed is thousands of small acyclic
    dicts, and every 700 of them would set off a collection."""
    _READING.fields, _READING.keys = tuple(fields), tuple(keys)
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        _READING.fields, _READING.keys = None, ()
        if was_on:
            gc.enable()


@contextmanager
def reading_days() -> Iterator[None]:
    """Query answers in this thread come with their items as ``RawItems``: botocore's
    shape of them (``{"B": bytes}`` for binary), decoded by orjson and pybase64."""
    _READING.days = True
    try:
        yield
    finally:
        _READING.days = False


def page_items(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of one parsed Query answer (taken over or botocore's own)."""
    items: list[dict[str, Any]] = answer.get("RawItems", answer.get("Items", []))
    return items


def page_table(answer: dict[str, Any], fields: Sequence[str]) -> pa.Table:
    """The items of one parsed Query answer as a table of ``fields`` (all text)."""
    if "ArrowItems" in answer:
        return answer["ArrowItems"]
    return typed_table(page_items(answer), fields)


def concat(tables: Sequence[pa.Table], fields: Sequence[str]) -> pa.Table:
    return pa.concat_tables(tables) if tables else empty(fields)


def empty(fields: Sequence[str]) -> pa.Table:
    return pa.table({f: pa.array([], pa.string()) for f in fields})


def _take_items(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    fields = _READING.fields
    if (fields is None and not _READING.days) or response_dict.get("status_code") != 200:
        return
    raw = response_dict["body"]
    arrow = arrow_page(raw, fields, _READING.keys) if fields is not None else None
    if arrow is not None:
        customized_response_dict["ArrowItems"], rest = arrow
    else:
        try:
            rest = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return  # let botocore parse (and report) it
        items = rest.pop("Items", None) if isinstance(rest, dict) else None
        if not isinstance(items, list) or (fields is None and not _binary_decoded(items)):
            return
        customized_response_dict["RawItems"] = items
    response_dict["body"] = orjson.dumps(rest)


_SCALARS = frozenset(("S", "N", "NULL", "BOOL"))


def _binary_decoded(items: list[Any]) -> bool:
    """Decode, in place, the binary attributes of ``items``: then they are what botocore
    gives. False (left to botocore) for anything else: an item that is not an object of
    attributes, a set, list or map (botocore decodes binary inside them), or a binary
    value that is not base64."""
    for item in items:
        if not isinstance(item, dict):
            return False
        for attribute in item.values():
            if not isinstance(attribute, dict) or len(attribute) != 1:
                return False
            if "B" in attribute:
                try:
                    attribute["B"] = _b64(attribute["B"])
                except (TypeError, ValueError):
                    return False
            elif not _SCALARS.issuperset(attribute):
                return False
    return True


def _b64(text: str) -> bytes:
    try:
        return pybase64.b64decode(text, validate=True)
    except binascii.Error:
        return base64.b64decode(text)  # botocore's own decoder: it skips stray characters


def arrow_page(
    body: bytes, fields: Sequence[str], keys: Sequence[str]
) -> tuple[pa.Table, dict[str, Any]] | None:
    """A Query answer of string attributes only, parsed by Arrow: its items as a table
    of ``fields`` and the rest of the answer (counts, ``LastEvaluatedKey``) as botocore
    reads it. None when the page has any other shape (it is then decoded typed)."""
    schema = pa.schema(
        [
            ("Items", pa.list_(pa.struct([(f, _STRING) for f in fields]))),
            ("Count", pa.int64()),
            ("ScannedCount", pa.int64()),
            ("LastEvaluatedKey", pa.struct([(k, _STRING) for k in keys])),
        ]
    )
    try:
        page = pa_json.read_json(
            io.BytesIO(body),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(body) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if page.num_rows != 1:
        return None
    items = page.column("Items").combine_chunks()
    rest = page.drop_columns(["Items"]).to_pylist()[0]
    values = items.values
    if items.null_count or values.null_count or rest["Count"] != len(values):
        return None  # no Items member, a null item, or not as many as DynamoDB counted
    answer = {k: v for k, v in rest.items() if v is not None}
    if "LastEvaluatedKey" in answer:
        key = answer["LastEvaluatedKey"]
        answer["LastEvaluatedKey"] = {k: v for k, v in key.items() if v is not None}
    # flatten: an attribute sent as JSON null reads as null, as in the typed path
    table = pa.table({f: values.field(f).flatten()[0] for f in fields})
    return table, answer


def typed_table(items: list[dict[str, Any]], fields: Sequence[str]) -> pa.Table:
    """DynamoDB items (typed JSON) as a table of ``fields``, every value as text: a
    string as it is, a number as its digits, NULL or absent as null. Each column is one
    pass in C (``map`` of ``dict.get`` then ``["S"]``) unless it holds anything but
    strings, which takes the per-value path."""
    columns = {}
    for f in fields:
        try:
            column = list(map(_TEXT, map(dict.get, items, repeat(f), repeat(_ABSENT))))
        except (KeyError, TypeError):
            column = [_text(i.get(f)) for i in items]
        columns[f] = pa.array(column, pa.string())
    return pa.table(columns)


def _text(attribute: dict[str, Any] | None) -> str | None:
    if attribute is None or "NULL" in attribute:
        return None
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        return str(attribute["N"])
    return str(from_item({"v": attribute})["v"])
