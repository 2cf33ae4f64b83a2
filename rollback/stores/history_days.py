"""Day blocks: each closed UTC day of an environment's history, kept as Arrow columns.

A report reads weeks of history. Item by item, DynamoDB sends ~280 bytes of typed JSON
per record and a reader decodes every value; a day block holds one day's records of one
environment as a compressed Arrow IPC stream (~25 bytes a record), which the window read
fetches in a few large items and decodes in C++.

The records stay the truth; a block is a copy, used only while it is provably whole:

- every write counts its record in the day's **counter** item (``rows``): ``append`` in
  the same transaction as the record, ``import`` before it writes the records;
- a reader builds a block from a Query of the day's records only when the Query found
  exactly ``rows`` records, and publishes it with an update that holds only while
  ``rows`` is unchanged; the block's parts are keyed by the count they hold, so a slower
  builder's parts never replace a newer block's;
- a block is read only while its count equals ``rows``: a later write to that day (a
  late deploy, an import) leaves the block stale, and the day is read from its records
  again (and its block built anew).

Records are only added, never changed in place, so the same count means the same
records. A count that never matches (an import that died between its count and its
writes) costs speed, never truth: that day is always read from its records.

Layout, in the history table itself (no index sees these items: they have neither
``environment`` nor ``t``; the store refuses control characters in an environment's
name, so no record's ``pk`` starts with the unit separator):

- counter: ``pk`` = ``"\\x1f" + environment``, ``sk`` = ``day#YYYY-MM-DD``; ``rows``, and
  once a block is published ``block_rows`` and ``block_parts``;
- part: ``sk`` = ``day#YYYY-MM-DD#ROWS#PART``, ``data`` (binary), each under DynamoDB's
  400 KB item limit.

Both expire (TTL) a day after the last of their records can.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from rollback.models import DeploymentRecord, in_utc

# What a day block holds: the fields the reports and /deployment/stats read (the
# environment is the block's key), and ``t``.
BLOCK_FIELDS = tuple(
    f.name
    for f in fields(DeploymentRecord)
    if f.name not in ("environment", "image_tag", "commit_sha")
    and not f.name.endswith("schema_version")
)
PART_BYTES = 300_000  # DynamoDB's item limit is 400 KB, names and keys included


def partition_key(environment: str) -> str:
    return "\x1f" + environment


def counter_key(environment: str, day: date) -> dict[str, Any]:
    return {"pk": {"S": partition_key(environment)}, "sk": {"S": f"day#{day.isoformat()}"}}


def part_key(environment: str, day: date, rows: int, part: int) -> dict[str, Any]:
    sk = f"day#{day.isoformat()}#{rows}#{part}"
    return {"pk": {"S": partition_key(environment)}, "sk": {"S": sk}}


def item_day(item: dict[str, Any]) -> tuple[str, date]:
    """The environment and UTC day a record's item counts in (the day of its ``t``,
    which the store writes as UTC text)."""
    return item["environment"]["S"], date.fromisoformat(item["t"]["S"][:10])


def expires_at(day: date, retention_days: int) -> int:
    return int(start_of(day + timedelta(days=1)).timestamp()) + (retention_days + 1) * 86400


def count_update(
    table: str, environment: str, day: date, rows: int, retention_days: int
) -> dict[str, Any]:
    """The UpdateItem arguments that count ``rows`` more records in the day."""
    return {
        "TableName": table,
        "Key": counter_key(environment, day),
        "UpdateExpression": "ADD #rows :n SET expires_at = :x",
        "ExpressionAttributeNames": {"#rows": "rows"},
        "ExpressionAttributeValues": {
            ":n": {"N": str(rows)},
            ":x": {"N": str(expires_at(day, retention_days))},
        },
    }


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def days_between(start: datetime, end: datetime) -> list[date]:
    """The UTC days that ``[start, end)`` touches (a naive time is UTC)."""
    first = in_utc(start).date()
    last = in_utc(end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def spans(days: Iterable[date]) -> Iterator[tuple[date, date]]:
    """Runs of consecutive days, as (first, last)."""
    run: list[date] = []
    for day in sorted(days):
        if run and day != run[-1] + timedelta(days=1):
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


@dataclass
class Day:
    """What the table holds of one day: its counter and the parts of each block."""

    rows: int | None = None  # None: no counter (a day written before counters)
    block_rows: int | None = None
    block_parts: int = 0
    parts: dict[int, dict[int, bytes]] = field(default_factory=dict)  # rows -> part -> data

    def block(self) -> list[bytes] | None:
        """The day's block when it is whole and current (its count is the counter's)."""
        if self.rows is None or self.block_rows != self.rows:
            return None
        have = self.parts.get(self.rows, {})
        if any(n not in have for n in range(self.block_parts)):
            return None
        return [have[n] for n in range(self.block_parts)]


def read_items(items: Iterable[dict[str, Any]], days: dict[date, Day]) -> None:
    """Sort counter and part items (as botocore parses them) into ``days``."""
    for item in items:
        sk = item["sk"]["S"].split("#")
        day = days.setdefault(date.fromisoformat(sk[1]), Day())
        if len(sk) == 2:
            day.rows = int(item["rows"]["N"]) if "rows" in item else None
            if "block_rows" in item:
                day.block_rows = int(item["block_rows"]["N"])
                day.block_parts = int(item["block_parts"]["N"])
        elif len(sk) == 4 and "data" in item:
            day.parts.setdefault(int(sk[2]), {})[int(sk[3])] = item["data"]["B"]
