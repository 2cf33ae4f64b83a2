"""The deployment history (DynamoDB): one item per deploy or rollback of a service.

The store is where the history becomes true, so it normalizes on the way in:

- every timestamp is written in UTC, one fixed-width format (``...+00:00``), so text
  order is time order in every key and index;
- the item key is ``env#service`` + ``record_id``: the record id is the identity, and the
  same record written again (with another UTC offset, or re-imported) is already there;
- ``t`` (finished_at, else started_at, else the write time) orders two indexes:
  ``by-service-time`` (newest first per service) and ``by-environment-time`` (an
  environment's records by time, and the reports' window reads);
- ``expires_at`` (the TTL) runs from the deploy's finish, ``retention_days`` out;
- a record that finishes before it starts is refused.

Reports read a window through ``read_window``: each closed UTC day from its day block
(``history_days``: the day's records as compressed Arrow columns, used only while its
count equals the day's counter, which every write moves), and the days without a current
block from their records, by a Query of the environment/time index with a projection of
the fields they use, each page decoded into Arrow columns (``history_pages``: Arrow's
JSON reader on the wire bytes, no Python object per value). A closed day read from its
records gets its block then, so the next read fetches it whole.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rollback import aws
from rollback.errors import MissingTableError, StoreError
from rollback.models import DeploymentRecord, in_utc, parse_iso, utcnow
from rollback.stores import history_days
from rollback.stores._dynamo import DynamoTable, from_item, side_by_side, to_item
from rollback.text import has_control

if TYPE_CHECKING:
    import pyarrow as pa

    from rollback.stores.history_days import Day

log = logging.getLogger(__name__)
BY_SERVICE_TIME = "by-service-time"
BY_ENVIRONMENT_TIME = "by-environment-time"
RECORD_FIELDS = tuple(f.name for f in fields(DeploymentRecord))
_TIME_FIELDS = ("committed_at", "started_at", "finished_at")
_NUMBER_FIELDS = ("schema_version", "min_schema_version", "max_schema_version")
_BATCH_WRITE, _BATCH_GET = 25, 100
# The window read also reads this far before its start from the day blocks: each seen
# service's last deploy before the window is usually there (a Query per service if not).
LOOKBACK = timedelta(days=1)


def utc_text(ts: datetime | None) -> str | None:
    """A timestamp as the store writes it: UTC, microseconds, ``+00:00`` (fixed width,
    so comparing the text compares the times)."""
    return None if ts is None else in_utc(ts).isoformat(timespec="microseconds")


def record_to_dict(record: DeploymentRecord) -> dict[str, Any]:
    data = {f: getattr(record, f) for f in RECORD_FIELDS}
    for f in _TIME_FIELDS:
        data[f] = utc_text(data[f])
    return data


def check_record(record: DeploymentRecord) -> None:
    """ValueError when the record cannot be true (it finishes before it starts) or names
    its place with control characters."""
    for name in ("environment", "service"):
        value = getattr(record, name)
        if not value or has_control(value):
            raise ValueError(f"{name} must be non-empty text without control characters")
    if record.started_at and record.finished_at and record.finished_at < record.started_at:
        raise ValueError(
            f"finished_at {utc_text(record.finished_at)} is before started_at "
            f"{utc_text(record.started_at)} (a negative duration)"
        )


def record_from_dict(data: dict[str, Any]) -> DeploymentRecord:
    """Build a record from a plain mapping (a stored item or an import line);
    ValueError names the field that is wrong."""
    missing = [f for f in ("environment", "service", "version", "status") if not data.get(f)]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    if data["status"] not in ("success", "failed"):
        raise ValueError(f"status must be success or failed, not {data['status']!r}")
    kind = data.get("kind") or "deploy"
    if kind not in ("deploy", "rollback"):
        raise ValueError(f"kind must be deploy or rollback, not {kind!r}")
    unknown = set(data) - set(RECORD_FIELDS) - {"pk", "sk", "t", "expires_at"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    times: dict[str, Any] = {}
    for f in _TIME_FIELDS:
        try:
            times[f] = parse_iso(data.get(f))
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"{f} is not an ISO timestamp: {data.get(f)!r}") from None
    kwargs: dict[str, Any] = {f: data.get(f) for f in RECORD_FIELDS if f not in _TIME_FIELDS}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs["kind"] = kind
    for f in _NUMBER_FIELDS:
        if f in kwargs:
            kwargs[f] = int(kwargs[f])
    record = DeploymentRecord(**kwargs, **times)
    check_record(record)
    return record


@dataclass(frozen=True)
class ImportResult:
    """What a bulk load did: records written, records the table already held (same
    environment, service and record id), and records refused with the reason
    (``(position in the input, reason)``)."""

    stored: int
    already_present: int
    refused: tuple[tuple[int, str], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return (
            f"{self.stored} stored, {self.already_present} already present, "
            f"{len(self.refused)} refused"
        )


class HistoryStore(DynamoTable):
    key_schema = [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    attributes = [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "t", "AttributeType": "S"},
        {"AttributeName": "environment", "AttributeType": "S"},
    ]
    indexes = [
        {
            "IndexName": BY_SERVICE_TIME,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "t", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": BY_ENVIRONMENT_TIME,
            "KeySchema": [
                {"AttributeName": "environment", "KeyType": "HASH"},
                {"AttributeName": "t", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ]
    ttl_attribute = "expires_at"
    # Records an import counts at a time, then writes (40 batches; a chunk of one day's
    # records touches one or two days).
    import_chunk = 1_000

    def __init__(
        self,
        *args: Any,
        retention_days: int = 90,
        ttl_days: int | None = None,  # the config's older name for the retention
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retention_days = ttl_days or retention_days

    def ensure(self, create: bool) -> None:
        """The table exists with both time indexes (a table of an older layout is
        named, with what to do)."""
        super().ensure(create)
        try:
            table = self.client.describe_table(TableName=self.table)["Table"]
        except ClientError as exc:
            raise aws.translate(exc, f"describe table {self.table}") from exc
        have = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        missing = [i["IndexName"] for i in self.indexes if i["IndexName"] not in have]
        if missing:
            raise MissingTableError(
                f"DynamoDB table {self.table!r} has no index {', '.join(missing)}: it was "
                "created by an older version; export it, create the table anew "
                "(stores.create_tables: true) and load the export with `history import`"
            )

    # -- writing -------------------------------------------------------------------------

    def _item(self, record: DeploymentRecord) -> dict[str, Any]:
        data = record_to_dict(record)
        when = record.finished_at or record.started_at or utcnow()
        data["pk"] = f"{record.environment}#{record.service}"
        data["sk"] = record.record_id
        data["t"] = utc_text(when)
        data["expires_at"] = int(when.timestamp()) + self.retention_days * 86400
        return to_item(data)

    def append(self, record: DeploymentRecord) -> bool:
        """Add one record, counted in its day in the same transaction; False when the
        table already holds its record id (the same record twice is a no-op, never a
        duplicate). ValueError for a record that cannot be true."""
        check_record(record)
        item = self._item(record)
        environment, day = history_days.item_day(item)
        count = history_days.count_update(self.table, environment, day, 1, self.retention_days)
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {"Update": count},
                ]
            )
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                log.info("history already holds %s of %s", record.record_id, record.service)
                return False
            raise aws.translate(exc, f"write history for {record.service}") from exc
        return True

    def import_many(self, records: Sequence[DeploymentRecord]) -> ImportResult:
        """Bulk load: records the table (or this load) already holds are counted, not
        written again; impossible records are refused; the rest are written in batches
        of 25 (unprocessed items resent)."""
        refused: list[tuple[int, str]] = []
        fresh: dict[tuple[str, str], DeploymentRecord] = {}
        repeated = 0
        for n, record in enumerate(records):
            try:
                check_record(record)
            except ValueError as exc:
                refused.append((n, str(exc)))
                continue
            key = (f"{record.environment}#{record.service}", record.record_id)
            if key in fresh:
                repeated += 1
            else:
                fresh[key] = record
        present = self._existing(list(fresh))
        new = sorted(
            (self._item(r) for k, r in fresh.items() if k not in present),
            key=history_days.item_day,
        )
        # Each chunk's days are counted before its records are written: a day's count is
        # never short of its records. An import that dies leaves only the days of the
        # chunk it was writing counted ahead (read from their records from then on).
        for start in range(0, len(new), self.import_chunk):
            chunk = new[start : start + self.import_chunk]
            self._count(chunk)
            for first in range(0, len(chunk), _BATCH_WRITE):
                self._write_batch(chunk[first : first + _BATCH_WRITE])
        return ImportResult(len(new), repeated + len(present), tuple(refused))

    def _count(self, items: Sequence[dict[str, Any]]) -> None:
        days = Counter(history_days.item_day(i) for i in items)
        for (environment, day), rows in sorted(days.items()):
            update = history_days.count_update(
                self.table, environment, day, rows, self.retention_days
            )
            try:
                self.client.update_item(**update)
            except ClientError as exc:
                raise aws.translate(exc, "import history") from exc

    def _existing(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), _BATCH_GET):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [to_item({"pk": pk, "sk": sk}) for pk, sk in keys[start : start + 100]],
                    "ProjectionExpression": "pk, sk",
                }
            }
            for attempt in range(8):
                try:
                    out = self.client.batch_get_item(RequestItems=pending)
                except ClientError as exc:
                    raise aws.translate(exc, "import history") from exc
                for item in out.get("Responses", {}).get(self.table, []):
                    found.add((item["pk"]["S"], item["sk"]["S"]))
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 2))
        return found

    def _write_batch(self, items: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table: [{"PutRequest": {"Item": i}} for i in items]}
        for attempt in range(8):
            try:
                out = self.client.batch_write_item(RequestItems=pending)
            except ClientError as exc:
                raise aws.translate(exc, "import history") from exc
            pending = out.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 2))
        raise StoreError(f"import history: DynamoDB kept {len(pending)} writes unprocessed")

    # -- reading -------------------------------------------------------------------------

    def query(
        self, environment: str, service: str | None = None, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Records newest first (by finish, else start), for one service or the whole
        environment."""
        if service:
            kwargs: dict[str, Any] = {
                "IndexName": BY_SERVICE_TIME,
                "KeyConditionExpression": "pk = :k",
                "ExpressionAttributeValues": to_item({":k": f"{environment}#{service}"}),
            }
        else:
            kwargs = {
                "IndexName": BY_ENVIRONMENT_TIME,
                "KeyConditionExpression": "environment = :e",
                "ExpressionAttributeValues": to_item({":e": environment}),
            }
        kwargs.update(TableName=self.table, ScanIndexForward=False)
        records: list[DeploymentRecord] = []
        while True:
            if limit:
                kwargs["Limit"] = limit - len(records)
            try:
                out = self.client.query(**kwargs)
            except ClientError as exc:
                raise aws.translate(exc, f"read history of {environment}") from exc
            records.extend(record_from_dict(from_item(i)) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out or (limit and len(records) >= limit):
                return records
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def get(self, record_id: str, places: Iterable[tuple[str, str]]) -> DeploymentRecord | None:
        """The record with this id among ``places`` (environment, service), or None."""
        keys = [{"pk": f"{e}#{s}", "sk": record_id} for e, s in sorted(set(places))]
        for start in range(0, len(keys), _BATCH_GET):
            request = {self.table: {"Keys": [to_item(k) for k in keys[start : start + 100]]}}
            try:
                out = self.client.batch_get_item(RequestItems=request)
            except ClientError as exc:
                raise aws.translate(exc, f"read history record {record_id}") from exc
            items = out.get("Responses", {}).get(self.table, [])
            if items:
                return record_from_dict(from_item(items[0]))
        return None

    def read_window(
        self,
        environment: str,
        start: datetime,
        end: datetime,
        fields: Sequence[str],
    ) -> pa.Table:
        """Columns of the environment's records whose time is in ``[start, end)``, oldest
        first, then, for each service seen, its last deploy before ``start`` (a rollback
        in the window may revert it). Times come as UTC timestamps when the store wrote
        them (text otherwise). Fields a day block holds are read from the blocks."""
        if set(fields) <= set(history_days.BLOCK_FIELDS):
            table = self._read_days(environment, start, end)
            if table is not None:
                return table.select(list(fields))
        return self._read_records(environment, start, end, fields)

    def _read_records(
        self, environment: str, start: datetime, end: datetime, fields: Sequence[str]
    ) -> pa.Table:
        from rollback.stores import history_pages  # pyarrow: loaded by the reports only

        window = self._records_between(environment, start, end, fields)
        seen = window.column("service").unique().to_pylist() if "service" in fields else []
        services = sorted(s for s in seen if s)
        # One small Query per service, each mostly a round trip: sent side by side.
        befores = side_by_side(lambda s: self._last_deploy(environment, s, start, fields), services)
        return history_pages.concat([window, *befores], fields)

    def _read_days(self, environment: str, start: datetime, end: datetime) -> pa.Table | None:
        """The window read through the day blocks: each closed day (before today, UTC)
        with a current block from it, the other days from their records (building the
        blocks of closed days on the way); ``LOOKBACK`` before ``start`` too, for the
        last deploys. None when a record's times are not the store's UTC text."""
        from rollback.stores import history_blocks as blocks

        blocks.steady_memory()
        days = history_days.days_between(start - LOOKBACK, end)
        today = utcnow().date()
        closed = [d for d in days if d < today]
        held = self._day_items(environment, closed)
        pieces, missing = blocks.held_blocks(held, closed)
        spans = list(history_days.spans(missing))
        if len(closed) < len(days):
            spans.append((days[len(closed)], days[-1]))
        fields = (*history_days.BLOCK_FIELDS, "t")
        building: dict[date, pa.Table] = {}
        for first, last in spans:
            # a closed day is read whole (its block is built from it), the open days to end
            a = history_days.start_of(first)
            b = history_days.start_of(last + timedelta(days=1)) if last < today else end
            records = blocks.typed(self._records_between(environment, a, b, fields))
            if records is None:
                return None
            building |= blocks.by_day(records, [d for d in missing if first <= d <= last])
            pieces.append((a, b, records))
        side_by_side(lambda d: self._publish(environment, d, building[d], held.get(d)), building)
        window = blocks.clip(pieces, start, end)
        services = sorted(s for s in window.column("service").unique().to_pylist() if s)
        found = blocks.last_deploys(blocks.clip(pieces, start - LOOKBACK, start), services)
        rest = [s for s in services if s not in found]
        queried = side_by_side(lambda s: self._last_deploy(environment, s, start, fields), rest)
        befores = [found[s] for s in services if s in found] + [blocks.typed(q) for q in queried]
        if any(b is None for b in befores):
            return None
        return blocks.concat([window, *befores])

    def _day_items(self, environment: str, days: Sequence[date]) -> dict[date, Day]:
        """The counters and block parts the table holds for ``days``."""
        from rollback.stores import history_pages  # pyarrow: loaded by the reports only

        held: dict[date, Day] = {}
        if not days:
            return held
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": to_item(
                {
                    ":p": history_days.partition_key(environment),
                    ":a": f"day#{min(days).isoformat()}",
                    ":b": f"day#{max(days).isoformat()}#~",
                }
            ),
        }
        history_pages.register(self.client)
        with history_pages.reading_days():
            while True:
                try:
                    out = self.client.query(**kwargs)
                except ClientError as exc:
                    raise aws.translate(exc, f"read history days of {environment}") from exc
                history_days.read_items(history_pages.page_items(out), held)
                if "LastEvaluatedKey" not in out:
                    return held
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def _publish(self, environment: str, day: date, rows: pa.Table, held: Day | None) -> None:
        """Keep a closed day's records (all of them: ``rows``) as its block, when the
        day's counter says they are all (a day written before counters gets its counter
        now, unless a write made one meanwhile). A block the table refuses (a write came
        in between, or no right to write) is left: the day is read from its records."""
        from rollback.stores import history_blocks as blocks

        count, counted = rows.num_rows, held.rows if held else None
        if counted is not None and counted != count:
            return  # a write is on its way, or died between its count and its records
        blobs = blocks.encode(rows)
        expires = history_days.expires_at(day, self.retention_days)
        try:
            for n, blob in enumerate(blobs):
                key = history_days.part_key(environment, day, count, n)
                item = key | {"data": {"B": blob}, "expires_at": {"N": str(expires)}}
                self.client.put_item(TableName=self.table, Item=item)
            self.client.update_item(
                TableName=self.table,
                Key=history_days.counter_key(environment, day),
                UpdateExpression="SET #rows = :n, block_rows = :n, block_parts = :k, "
                "expires_at = :x",
                ConditionExpression="attribute_not_exists(pk)" if counted is None else "#rows = :n",
                ExpressionAttributeNames={"#rows": "rows"},
                ExpressionAttributeValues={
                    ":n": {"N": str(count)},
                    ":k": {"N": str(len(blobs))},
                    ":x": {"N": str(expires)},
                },
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                log.warning(
                    "history day block of %s %s not kept (%s): that day is read from its "
                    "records", environment, day, aws.error_code(exc),
                )  # fmt: skip

    def _records_between(
        self, environment: str, start: datetime, end: datetime, fields: Sequence[str]
    ) -> pa.Table:
        """The environment's records with ``t`` in ``[start, end)``: one paged Query of
        the environment/time index."""
        return self._query_table(
            {
                "IndexName": BY_ENVIRONMENT_TIME,
                "KeyConditionExpression": "environment = :e AND t BETWEEN :a AND :b",
                "ExpressionAttributeValues": to_item(
                    {
                        ":e": environment,
                        ":a": utc_text(start),
                        ":b": utc_text(end - timedelta(microseconds=1)),
                    }
                ),
            },
            fields,
        )

    def _last_deploy(
        self, environment: str, service: str, start: datetime, fields: Sequence[str]
    ) -> pa.Table:
        return self._query_table(
            {
                "IndexName": BY_SERVICE_TIME,
                "KeyConditionExpression": "pk = :k AND t < :a",
                "FilterExpression": "kind = :d AND attribute_exists(finished_at)",
                "ExpressionAttributeValues": to_item(
                    {":k": f"{environment}#{service}", ":a": utc_text(start), ":d": "deploy"}
                ),
                "ScanIndexForward": False,
                "Limit": 25,
            },
            fields,
            first_only=True,
        )

    def _query_table(
        self, kwargs: dict[str, Any], fields: Sequence[str], first_only: bool = False
    ) -> pa.Table:
        """The items of a paged Query as one table of ``fields`` (``first_only``: the
        first item found), each page decoded by ``history_pages``."""
        from rollback.stores import history_pages

        names = {f"#f{i}": f for i, f in enumerate(fields)}
        kwargs = {
            **kwargs,
            "TableName": self.table,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        keys = [a["AttributeName"] for a in self.attributes]
        pages: list[pa.Table] = []
        history_pages.register(self.client)
        with history_pages.reading(fields, keys):
            while True:
                try:
                    out = self.client.query(**kwargs)
                except ClientError as exc:
                    raise aws.translate(exc, f"read history window of {self.table}") from exc
                page = history_pages.page_table(out, fields)
                if first_only:
                    page = page.slice(0, 1)
                pages.append(page)
                if "LastEvaluatedKey" not in out or (first_only and page.num_rows):
                    return history_pages.concat(pages, fields)
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
