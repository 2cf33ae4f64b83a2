"""A small local DynamoDB for the history table's two time-index Queries, for benchmarks.

It answers exactly the Queries ``HistoryStore.read_window`` sends (the environment/time
index over a range, the service/time index backwards with a filter), the way DynamoDB
answers: wire JSON (``application/x-amz-json-1.0``), pages cut where the items *read*
reach 1 MB (the whole item counts, not only the projected fields), ``LastEvaluatedKey``,
``x-amz-crc32``. Each distinct request's answer is rendered once and kept ("recorded"):
the next identical request replays the bytes, so a replayed run measures the client.
``bench/report_scale.py`` checks its answers against the moto server on a small table.

Run: ``python dynamo_replay.py TABLE.pkl PORT`` (the pickle holds the table as a frame of
store strings, see ``report_scale.store_table``).
"""

from __future__ import annotations

import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import orjson
import pandas as pd

PAGE_BYTES = 1024 * 1024
ENV_RANGE = "environment = :e AND t BETWEEN :a AND :b"
SERVICE_BEFORE = "pk = :k AND t < :a"
SERVICE_FILTER = "kind = :d AND attribute_exists(finished_at)"


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


def serve(table_path: str, port: int) -> None:
    table = Table(pd.read_pickle(table_path))
    recorded: dict[bytes, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once, as from AWS

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            target = self.headers.get("x-amz-target", "")
            status, payload = 200, recorded.get(body)
            if payload is None:
                try:
                    if not target.endswith(".Query"):
                        raise ValueError(f"unsupported operation {target}")
                    payload = orjson.dumps(answer(table, orjson.loads(body)))
                    recorded[body] = payload
                except (ValueError, KeyError) as exc:
                    status = 400
                    payload = orjson.dumps(
                        {
                            "__type": "com.amazon.coral.validate#ValidationException",
                            "message": str(exc),
                        }  # fmt: skip
                    )
            self.send_response(status)
            self.send_header("content-type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-requestid", "replay")
            self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
