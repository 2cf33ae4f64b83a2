"""A small local DynamoDB for the history table's window read, for benchmarks.

It answers exactly the requests ``HistoryStore.read_window`` sends, the way DynamoDB
answers: wire JSON (``application/x-amz-json-1.0``), ``x-amz-crc32``, pages cut where
the items *read* reach 1 MB (the whole item counts, not only the projected fields),
``LastEvaluatedKey``. The requests:

- the two time-index Queries of the records (the environment/time index over a range,
  the service/time index backwards with a filter), over the generated records;
- the day items (``rollback/stores/history_days.py``: each closed day's counter and
  block parts): the base-table Query of an environment's days (``sk BETWEEN``), and
  the writes that publish a block (``PutItem`` of a part, the counter's conditional
  ``UpdateItem``, a failed condition answered ``ConditionalCheckFailedException``).
  Binary values travel base64-encoded, as in DynamoDB's JSON protocol. The table starts
  with the counters the product's write path would have written for the records (each
  environment's records per UTC day of ``t``, ``expires_at`` as ``history_days`` sets
  it), and no block: the first read builds them.

One call is the benchmark's own: ``ReplayBench.ResetDays`` takes the day items back to
the counters alone (the records' recorded answers kept), so that the next read is cold
again and replays every answer. Anything else is a 400 ``ValidationException``. Each distinct request's answer is
rendered once and kept ("recorded"): the next identical request replays the bytes, so a
replayed run measures the client. A successful write drops the recorded day Queries
(the only answers it can change). ``bench/report_scale.py`` checks the answers against
the moto server on a small table.

Run: ``python dynamo_replay.py TABLE.pkl PORT`` (the pickle holds the records as a frame
of store strings, see ``report_scale.store_table``).
"""

from __future__ import annotations

import base64
import bisect
import sys
import threading
import zlib
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rollback.stores import history_days  # noqa: E402 (the counters' expiry, one place)

PAGE_BYTES = 1024 * 1024
ENV_RANGE = "environment = :e AND t BETWEEN :a AND :b"
SERVICE_BEFORE = "pk = :k AND t < :a"
SERVICE_FILTER = "kind = :d AND attribute_exists(finished_at)"
INDEXES = {ENV_RANGE: "by-environment-time", SERVICE_BEFORE: "by-service-time"}
DAY_RANGE = "pk = :p AND sk BETWEEN :a AND :b"
PUBLISH = "SET #rows = :n, block_rows = :n, block_parts = :k, expires_at = :x"
PUBLISH_IF = ("#rows = :n", "attribute_not_exists(pk)")
ITEM_BYTES = 400 * 1024
RETENTION_DAYS = 90


class Table:
    """The table sorted by time, as columns of store strings (items are built only for
    the rows a page returns)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame.sort_values(["t", "sk"], kind="stable").reset_index(drop=True)
        self.columns = {c: frame[c].to_numpy(dtype=object) for c in frame.columns}
        sizes = np.zeros(len(frame), np.int64)
        for name in self.columns:
            present = frame[name].notna().to_numpy()
            lengths = frame[name].fillna("").astype(str).str.len().to_numpy(np.int64)
            sizes += np.where(present, len(name) + lengths, 0)
        self.sizes = sizes
        self.by_env = {e: g.index.to_numpy() for e, g in frame.groupby("environment")}
        self.by_pk = {k: g.index.to_numpy() for k, g in frame.groupby("pk")}
        self.t = self.columns["t"]
        # each index's times as text once (not on every page: a 1M-row recording)
        self.times = {id(p): self.t[p].astype(str) for p in (*self.by_env.values(),
                                                             *self.by_pk.values())}  # fmt: skip

    def item(self, row: int, fields: list[str]) -> dict[str, Any]:
        out = {}
        for f in fields:
            value = self.columns[f][row]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            out[f] = {"N" if f == "expires_at" else "S": str(value)}
        return out

    def rows(
        self, positions: np.ndarray, lo: str, hi: str | None, below: bool, after: Any = None
    ) -> np.ndarray:
        """The index's rows in ``[lo, hi]`` (or below ``lo``, newest first), those after
        the ``ExclusiveStartKey`` ``after`` only."""
        times = self.times.get(id(positions))
        if times is None:
            times = self.t[positions].astype(str)
        if below:
            rows = positions[: np.searchsorted(times, lo, side="left")][::-1]
            return self._after(rows, after)
        assert hi is not None  # a range has both ends
        first = np.searchsorted(times, lo, side="left")
        last = np.searchsorted(times, hi, side="right")
        if after is not None:  # time order: look for the key among rows of its time only
            t = after["t"]["S"]
            a, b = np.searchsorted(times, t, side="left"), np.searchsorted(times, t, side="right")
            same = self._after(positions[a:b], after)
            if len(same) < b - a:  # found: continue right after it
                first = max(first, b - len(same))
            else:
                return positions[:0]
        return positions[first:last]

    def _after(self, positions: np.ndarray, after: Any) -> np.ndarray:
        if after is None:
            return positions
        sk, pk = self.columns["sk"], self.columns["pk"]
        hit = np.flatnonzero(
            (sk[positions] == after["sk"]["S"]) & (pk[positions] == after["pk"]["S"])
        )
        return positions[hit[0] + 1 :] if len(hit) else positions[:0]


KEYS = ("pk", "sk")


def answer(table: Table, request: dict[str, Any]) -> dict[str, Any]:
    values = {k: next(iter(v.values())) for k, v in request["ExpressionAttributeValues"].items()}
    names = request.get("ExpressionAttributeNames", {})
    fields = [names.get(f.strip(), f.strip()) for f in request["ProjectionExpression"].split(",")]
    condition = request["KeyConditionExpression"]
    if request.get("IndexName") != INDEXES.get(condition):
        raise ValueError(f"unsupported query: {condition} on {request.get('IndexName')}")
    empty = np.zeros(0, np.int64)
    start = request.get("ExclusiveStartKey")
    if condition == ENV_RANGE:
        positions = table.rows(table.by_env.get(values[":e"], empty), values[":a"], values[":b"],
                               below=False, after=start)  # fmt: skip
        index_key = ("environment", "t")
    elif condition == SERVICE_BEFORE and not request.get("ScanIndexForward", True):
        positions = table.rows(table.by_pk.get(values[":k"], empty), values[":a"], None,
                               below=True, after=start)  # fmt: skip
        index_key = ("pk", "t")
    else:
        raise ValueError(f"unsupported query: {condition}")
    limit = request.get("Limit") or len(positions)
    cut = np.cumsum(table.sizes[positions]) if len(positions) else np.zeros(0, np.int64)
    count = min(limit, int(np.searchsorted(cut, PAGE_BYTES, side="left")) + 1, len(positions))
    taken = positions[:count]
    if request.get("FilterExpression") == SERVICE_FILTER:
        kind, finished = table.columns["kind"][taken], table.columns["finished_at"][taken]
        keep = (kind == values[":d"]) & pd.notna(finished)
        taken = taken[keep]
    out = [table.item(int(p), fields) for p in taken]
    page: dict[str, Any] = {"Items": out, "Count": len(out), "ScannedCount": count}
    if count < len(positions):
        last = int(positions[count - 1])
        page["LastEvaluatedKey"] = table.item(last, list(dict.fromkeys((*KEYS, *index_key))))
    return page


# -- the day items: counters and block parts ---------------------------------------------


class ConditionFailed(Exception):
    """A write's ConditionExpression did not hold."""


def value_size(value: dict[str, Any]) -> int:
    """An attribute value's size as DynamoDB counts it: UTF-8 text, raw binary bytes, a
    number 1 byte per two significant digits plus 1."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(base64.b64decode(v))
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    raise ValueError(f"unsupported attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def _exactly(request: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = set(request) - allowed
    if extra:
        raise ValueError(f"unsupported {what} parameter(s): {', '.join(sorted(extra))}")


def _day_key(key: dict[str, Any]) -> tuple[str, str]:
    if set(key) != {"pk", "sk"} or not key["pk"]["S"].startswith(history_days.partition_key("")):
        raise ValueError("only the history's day items can be written here")
    return key["pk"]["S"], key["sk"]["S"]


class Days:
    """The day items, wire-typed as DynamoDB stores them, each partition sorted by sk."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}
        self.keys: dict[str, list[str]] = {}

    @classmethod
    def counted(cls, frame: pd.DataFrame) -> Days:
        """The counters the store's writes keep for ``frame``'s records: per environment
        and UTC day of ``t``, ``rows`` and ``expires_at``."""
        days = cls()
        counts = frame.groupby([frame["environment"], frame["t"].str[:10]]).size()
        for (environment, day), rows in counts.items():
            key = history_days.counter_key(environment, date.fromisoformat(day))
            expires = history_days.expires_at(date.fromisoformat(day), RETENTION_DAYS)
            days.put(key | {"rows": {"N": str(rows)}, "expires_at": {"N": str(expires)}})
        return days

    def put(self, item: dict[str, Any]) -> None:
        pk, sk = _day_key({k: item[k] for k in ("pk", "sk")})
        size = item_size(item)
        if size > ITEM_BYTES:
            raise ValueError("Item size has exceeded the maximum allowed size")
        partition = self.items.setdefault(pk, {})
        if sk not in partition:
            bisect.insort(self.keys.setdefault(pk, []), sk)
        partition[sk] = (item, size)

    def put_item(self, request: dict[str, Any]) -> None:
        _exactly(request, {"TableName", "Item"}, "PutItem")
        self.put(request["Item"])

    def update_item(self, request: dict[str, Any]) -> None:
        """The block's publication: the counter's ``SET`` under its condition."""
        allowed = {"TableName", "Key", "UpdateExpression", "ConditionExpression",
                   "ExpressionAttributeNames", "ExpressionAttributeValues"}  # fmt: skip
        _exactly(request, allowed, "UpdateItem")
        condition = request.get("ConditionExpression")
        values = request["ExpressionAttributeValues"]
        if (
            request["UpdateExpression"] != PUBLISH
            or condition not in PUBLISH_IF
            or request.get("ExpressionAttributeNames") != {"#rows": "rows"}
            or set(values) != {":n", ":k", ":x"}
            or any(set(v) != {"N"} for v in values.values())
        ):
            raise ValueError(f"unsupported update: {request['UpdateExpression']}")
        pk, sk = _day_key(request["Key"])
        held = self.items.get(pk, {}).get(sk)
        if condition == "attribute_not_exists(pk)":
            holds = held is None
        else:  # a missing attribute compares false
            rows = held[0].get("rows") if held else None
            holds = rows is not None and Decimal(rows["N"]) == Decimal(values[":n"]["N"])
        if not holds:
            raise ConditionFailed
        item = dict(held[0]) if held else dict(request["Key"])
        item |= {"rows": values[":n"], "block_rows": values[":n"],
                 "block_parts": values[":k"], "expires_at": values[":x"]}  # fmt: skip
        self.put(item)

    def query(self, request: dict[str, Any]) -> dict[str, Any]:
        """An environment's day items with sk in ``[:a, :b]``, 1 MB pages."""
        allowed = {"TableName", "KeyConditionExpression", "ExpressionAttributeValues",
                   "ExclusiveStartKey", "Limit", "ScanIndexForward"}  # fmt: skip
        _exactly(request, allowed, "day Query")
        if request["KeyConditionExpression"] != DAY_RANGE:
            raise ValueError(f"unsupported query: {request['KeyConditionExpression']}")
        if not request.get("ScanIndexForward", True):
            raise ValueError("unsupported day query: backwards")
        values = {k: v["S"] for k, v in request["ExpressionAttributeValues"].items()}
        pk, keys = values[":p"], self.keys.get(values[":p"], [])
        first = bisect.bisect_left(keys, values[":a"])
        last = bisect.bisect_right(keys, values[":b"])
        after = request.get("ExclusiveStartKey")
        if after is not None:
            first = max(first, bisect.bisect_right(keys, after["sk"]["S"]))
        limit = request.get("Limit") or len(keys)
        items: list[dict[str, Any]] = []
        read = 0
        for sk in keys[first:last]:
            if read >= PAGE_BYTES or len(items) >= limit:
                break
            item, size = self.items[pk][sk]
            items.append(item)
            read += size
        page: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if first + len(items) < last:
            page["LastEvaluatedKey"] = {k: items[-1][k] for k in KEYS}
        return page


VALIDATION = "com.amazon.coral.validate#ValidationException"
CONDITION_FAILED = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"


class Server:
    """The table's records and day items, and the answers recorded so far."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.days = Days.counted(frame)
        # the counters alone, for a reset: the next read is cold again, its record
        # answers already rendered (a cold read then measures the client, not this server)
        self.counters = [i for part in self.days.items.values() for i, _ in part.values()]
        self.table = Table(frame)
        self.recorded: dict[bytes, bytes] = {}
        self.day_queries: set[bytes] = set()  # recorded answers a write can change
        self.lock = threading.Lock()  # a write and the day Queries, one at a time

    def handle(self, target: str, body: bytes) -> tuple[int, bytes]:
        payload = self.recorded.get(body)
        if payload is not None:
            return 200, payload
        operation = target.rpartition(".")[2]
        try:
            request = orjson.loads(body)
            if operation == "Query" and "IndexName" not in request:
                with self.lock:
                    payload = orjson.dumps(self.days.query(request))
                    self.recorded[body] = payload
                    self.day_queries.add(body)
            elif operation == "Query":
                payload = orjson.dumps(answer(self.table, request))
                self.recorded[body] = payload
            elif operation == "ResetDays":  # the benchmark's own call, not DynamoDB's
                with self.lock:
                    self.days = Days()
                    for item in self.counters:
                        self.days.put(item)
                    self._forget_days()
                payload = b"{}"
            elif operation in ("PutItem", "UpdateItem"):
                with self.lock:
                    write = self.days.put_item if operation == "PutItem" else self.days.update_item
                    write(request)
                    self._forget_days()
                payload = b"{}"
            else:
                raise ValueError(f"unsupported operation {target}")
        except ConditionFailed:
            return 400, error(CONDITION_FAILED, "The conditional request failed")
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            return 400, error(VALIDATION, str(exc))
        return 200, payload

    def _forget_days(self) -> None:
        for key in self.day_queries:
            self.recorded.pop(key, None)
        self.day_queries.clear()


def error(kind: str, message: str) -> bytes:
    return orjson.dumps({"__type": kind, "message": message})


def serve(table_path: str, port: int) -> None:
    server = Server(pd.read_pickle(table_path))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once, as from AWS

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status, payload = server.handle(self.headers.get("x-amz-target", ""), body)
            self.send_response(status)
            self.send_header("content-type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-requestid", "replay")
            self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
