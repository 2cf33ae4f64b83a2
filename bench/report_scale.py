"""How the metrics report scales: 10k, 100k and 1M deployment records.

For each size a realistic history (2 environments, 20 services, ~7% failed deploys, ~4%
rollbacks, most of them reverting the deploy before) and its audit log are generated.

**The product's read path** (the figures that count): the history is put in a small
local DynamoDB (``bench/support/dynamo_replay.py``: the history table's Queries and the
day blocks' writes answered as DynamoDB answers them, 1 MB pages, each answer recorded
once and replayed; the table starts with the day counters the store's writes keep, and
no day block), and a fresh child process runs what ``rollback report --env all`` runs:
``reports.pipeline.read_history`` through the same boto3 client and
``HistoryStore.read_window``, then the numbers and all files. A first child has the
server render and record every answer; the server is then reset to the counters alone,
and the next child's read is the **cold read** (the first read after a load or an
import: every closed day read from its records, and its block written; the answers
replayed, so it times the client); the later children's reads are **warm** (the
scheduled report's steady state: the days from their blocks), and the goal counts the
warm read. It is compared with a bare ``pd.read_csv`` of the same rows (the rows the read
returned) and of the whole table; a bare ``pd.read_parquet`` of the same frame is printed
for reference.
With pyarrow installed, pandas reads strings into Arrow (no Python object per value):
that is the bare load the goal counts. For reference only, the same bare load with
pyarrow hidden from pandas (a Python object per string, as before pyarrow was a
dependency) is measured too and printed beside it.
A wire check first reads a small table's window twice from the moto server and twice
from the replay server (cold: blocks built; warm: from the blocks): the four must be
equal.

**The CSV path** (the earlier figures, kept as a separate line): the same history as
CSV through ``reports.load``, against a bare ``pd.read_csv`` and a per-record Python loop
that must give the same numbers (checked equal), which also checks the read path's
numbers.

Goals at 1M: read path <= 3x the bare load, peak <= 2 GB, 100k -> 1M roughly linear.
The read is timed from the first request; the process's first AWS client (~0.1 s, once
per process whatever the size, as importing pandas is for the bare load) is created just
before, timed apart and printed beside it, with the ratio it would give inside the read.
Each phase reports and the run goes on when one fails. ``--records 10000,100000`` picks
sizes; ``--json`` prints a one-line summary last.
Run: ``.venv/bin/python bench/report_scale.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# A reference child only: pandas without pyarrow (each string a Python object), as the
# bare load was measured before pyarrow became a dependency. Must precede pandas' import.
PYTHON_STRINGS = "bare-same-python-strings"
if sys.argv[1:3] == ["--child", PYTHON_STRINGS]:
    sys.modules["pyarrow"] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (10_000, 100_000, 1_000_000)
ROUNDS = 3  # interleaved measurement rounds of the read path
NOW = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
DAYS = 30
SPAN_DAYS = 120
ENVIRONMENTS = ("prod", "staging")
TRIGGERS = ("manual", "alarm", "health", "webhook")
AUTOMATIC = {"webhook", "alarm", "health", "schedule"}


# -- a realistic history -----------------------------------------------------------------


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    env = rng.choice(ENVIRONMENTS, n, p=(0.7, 0.3))
    service = np.char.add("svc-", rng.integers(0, 20, n).astype(str))
    finished = pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(-0.5, SPAN_DAYS, n), unit="D")
    finished = finished.floor("s")
    df = pd.DataFrame({"environment": env, "service": service, "finished_at": finished})
    df = df.sort_values(["environment", "service", "finished_at"], kind="stable")
    df = df.reset_index(drop=True)
    rollback = rng.random(n) < 0.04
    counter = pd.Series(~rollback).groupby([df["environment"], df["service"]]).cumsum()
    counter = counter.to_numpy()
    version = np.char.add("v", counter.astype(str))
    previous = np.char.add("v", np.maximum(counter - 1, 0).astype(str))
    mismatched = rng.random(n) < 0.1
    df["kind"] = np.where(rollback, "rollback", "deploy")
    df["version"] = np.where(rollback, previous, version)
    missing = np.array(None, dtype=object)
    df["from_version"] = np.where(rollback, np.where(mismatched, previous, version), missing)
    df["status"] = np.where(rng.random(n) < np.where(rollback, 0.1, 0.07), "failed", "success")
    df["trigger"] = np.where(rollback, rng.choice(TRIGGERS, n, p=(0.4, 0.3, 0.2, 0.1)), missing)
    took = pd.to_timedelta(rng.lognormal(5, 0.6, n).round(), unit="s")
    df["started_at"] = df["finished_at"] - took
    lead = pd.to_timedelta(rng.uniform(0.2, 72, n).round(3), unit="h")
    df["committed_at"] = (df["started_at"] - lead).where(~rollback & (rng.random(n) < 0.8))
    df["commit_sha"] = None
    df["record_id"] = [f"{i:012x}" for i in rng.permutation(n)]

    rb = df.loc[rollback]
    refused = rng.random(len(rb)) < 0.1
    audit = pd.DataFrame(
        {
            "audit_id": [f"a{i:010x}" for i in range(len(rb))],
            "environment": rb["environment"].to_numpy(),
            "service": rb["service"].to_numpy(),
            "status": np.where(
                refused, "refused", np.where(rb["status"] == "success", "succeeded", "failed")
            ),
            "trigger": rb["trigger"].to_numpy(),
            "requested_at": (rb["started_at"] - pd.Timedelta(seconds=20)).to_numpy(),
            "finished_at": rb["finished_at"].to_numpy(),
            "from_version": rb["from_version"].to_numpy(),
            "to_version": rb["version"].to_numpy(),
            "dry_run": False,
        }
    )
    return df.sample(frac=1, random_state=seed), audit  # arrival order is not time order


def write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S+00:00")


# -- the straightforward baseline: one Python loop over the records ----------------------


def _parse(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def loop_load(history_csv: Path, audit_csv: Path) -> tuple[list[dict], list[dict]]:
    with history_csv.open() as f:
        history = list(csv.DictReader(f))
    for r in history:
        for k in ("committed_at", "started_at", "finished_at"):
            r[k] = _parse(r[k])
    with audit_csv.open() as f:
        audit = list(csv.DictReader(f))
    for a in audit:
        a["requested_at"], a["finished_at"] = _parse(a["requested_at"]), _parse(a["finished_at"])
        a["dry_run"] = a["dry_run"].lower() in ("true", "1")
    return history, audit


def _pct(values: list[float], q: float, digits: int) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (pos - lo), digits)


def _stats(deploys: list[dict]) -> dict[str, Any]:
    total = len(deploys)
    ok = sum(1 for d in deploys if d["status"] == "success")
    durations = [
        (d["finished_at"] - d["started_at"]).total_seconds() for d in deploys if d["started_at"]
    ]
    return {
        "totalDeployments": total,
        "successfulDeployments": ok,
        "failedDeployments": sum(1 for d in deploys if d["status"] == "failed"),
        "successRate": round(ok / total * 100, 2) if total else None,
        "averageDuration": round(sum(durations) / len(durations), 1) if durations else None,
    }


def _dora(deploys: list[dict], days: int) -> dict[str, Any]:
    ok = [d for d in deploys if d["status"] == "success"]
    lead = [(d["finished_at"] - d["committed_at"]).total_seconds() / 3600 for d in ok
            if d["committed_at"]]  # fmt: skip
    failures = [d for d in deploys if d["failure"]]
    restore = [d["restore_h"] for d in failures if d["restore_h"] is not None]
    total = len(deploys)
    return {
        "deploymentFrequencyPerDay": round(len(ok) / days, 3),
        "leadTimeHoursMedian": _pct(lead, 0.5, 2),
        "leadTimeHoursP90": _pct(lead, 0.9, 2),
        "leadTimeSampleSize": len(lead),
        "deploymentsWithoutCommitTime": len(ok) - len(lead),
        "changeFailureRatePercent": round(len(failures) / total * 100, 2) if total else None,
        "changeFailures": len(failures),
        "rolledBackDeployments": sum(1 for d in deploys if d["rolled_back"]),
        "timeToRestoreHoursMedian": _pct(restore, 0.5, 2),
        "timeToRestoreHoursP90": _pct(restore, 0.9, 2),
        "restoredCount": len(restore),
        "unrestoredCount": len(failures) - len(restore),
    }


def loop_numbers(history: list[dict], audit: list[dict], env: str, days: int) -> dict:
    """Every number of the report, one record at a time."""
    now = NOW
    start, prev_start = now - timedelta(days=days), now - timedelta(days=2 * days)
    rows = [r for r in history if r["environment"] == env and r["finished_at"]
            and r["finished_at"] < now]  # fmt: skip
    rows.sort(key=lambda r: (r["finished_at"], r["kind"] == "rollback", r["record_id"]))
    last_deploy: dict[str, dict] = {}
    for r in rows:
        r["rolled_back"], r["restore_h"], r["restored_by"] = False, None, None
        if r["kind"] == "deploy":
            last_deploy[r["service"]] = r
        else:
            d = last_deploy.get(r["service"])
            if d is not None and d["version"] == r["from_version"]:
                d["rolled_back"] = True
    next_ok: dict[str, dict] = {}
    for r in reversed(rows):
        r["failure"] = r["kind"] == "deploy" and (r["status"] == "failed" or r["rolled_back"])
        fix = next_ok.get(r["service"])
        if r["failure"] and fix is not None:
            r["restore_h"] = (fix["finished_at"] - r["finished_at"]).total_seconds() / 3600
            r["restored_by"] = (
                fix["trigger"] or "unknown" if fix["kind"] == "rollback" else "deploy"
            )
        if r["status"] == "success":
            next_ok[r["service"]] = r

    def deploys_between(a: datetime, b: datetime) -> list[dict]:
        return [r for r in rows if r["kind"] == "deploy" and a <= r["finished_at"] < b]

    window = [r for r in rows if start <= r["finished_at"] < now]
    deploys = [r for r in window if r["kind"] == "deploy"]
    services: dict[str, list[dict]] = {}
    for r in window:
        services.setdefault(r["service"], []).append(r)

    attempts = [a for a in audit if a["environment"] == env and not a["dry_run"]
                and a["status"] in ("succeeded", "failed", "refused", "interrupted")
                and a["finished_at"] and start <= a["finished_at"] < now]  # fmt: skip
    by_trigger = {}
    for t in sorted(
        set(("manual", "webhook", "alarm", "health")) | {a["trigger"] for a in attempts}
    ):
        mine = [a for a in attempts if a["trigger"] == t]
        by_trigger[t] = {"count": len(mine)} | {
            s: sum(1 for a in mine if a["status"] == s) for s in ("succeeded", "failed", "refused")
        }
    durations = [(a["finished_at"] - a["requested_at"]).total_seconds() for a in attempts
                 if a["status"] != "refused"]  # fmt: skip
    restorers: dict[str, list[float]] = {t: [] for t in ("manual", "webhook", "alarm", "health")}
    for d in deploys:
        if d["failure"] and d["restore_h"] is not None:
            restorers.setdefault(d["restored_by"], []).append(d["restore_h"])
    in_history = [r for r in window if r["kind"] == "rollback"]

    def service_dora(records: list[dict]) -> dict[str, Any]:
        ds = [r for r in records if r["kind"] == "deploy"]
        failures = [d for d in ds if d["failure"]]
        restored = [d["restore_h"] for d in failures if d["restore_h"] is not None]
        rbs = [r for r in records if r["kind"] == "rollback"]
        return {
            "changeFailures": len(failures),
            "changeFailureRatePercent": round(len(failures) / len(ds) * 100, 2) if ds else None,
            "rolledBackDeployments": sum(1 for d in ds if d["rolled_back"]),
            "restoredCount": len(restored),
            "unrestoredCount": len(failures) - len(restored),
            "timeToRestoreHoursMedian": _pct(restored, 0.5, 2),
            "rollbacks": len(rbs),
            "automaticRollbacks": sum(1 for r in rbs if r["trigger"] in AUTOMATIC),
        }

    return {
        "stats": _stats(deploys),
        "recentTrends": {
            f"last{n}Days": _stats(deploys_between(now - timedelta(days=n), now)) for n in (7, 30)
        },
        "dora": _dora(deploys, days),
        "rollbacks": {
            "count": len(attempts),
            **{
                s: sum(1 for a in attempts if a["status"] == s)
                for s in ("succeeded", "failed", "refused", "interrupted")
            },  # fmt: skip
            "byTrigger": by_trigger,
            "durationSecondsMedian": _pct(durations, 0.5, 1),
            "durationSecondsP90": _pct(durations, 0.9, 1),
            "timeToRestoreHoursMedianByTrigger": {
                t: _pct(v, 0.5, 2) for t, v in sorted(restorers.items())
            },
            "recordedInHistory": {
                "count": len(in_history),
                "succeeded": sum(1 for r in in_history if r["status"] == "success"),
                "failed": sum(1 for r in in_history if r["status"] == "failed"),
            },
        },
        "services": {
            s: _stats([r for r in rs if r["kind"] == "deploy"])
            for s, rs in sorted(services.items())
        },
        "serviceDora": {s: service_dora(rs) for s, rs in sorted(services.items())},
        "previous": {
            "stats": _stats(deploys_between(prev_start, start)),
            "dora": _dora(deploys_between(prev_start, start), days),
        },
    }


def pandas_numbers(document: dict) -> dict:
    keep = ("stats", "recentTrends", "dora", "rollbacks", "services", "serviceDora")
    numbers = {k: document[k] for k in keep}
    numbers["previous"] = {k: document["previousPeriod"][k] for k in ("stats", "dora")}
    return numbers


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two number trees differ (floats may differ by one unit of their rounding)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, float) and isinstance(b, float | int):
        return [] if abs(a - b) <= 0.0101 else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


# -- the measurements (each in a fresh child process) ------------------------------------


def child(mode: str, directory: str) -> dict[str, Any]:
    d = Path(directory)
    history_csv, audit_csv = d / "history.csv", d / "audit.csv"
    out: dict[str, Any] = {}
    if mode == "bare":
        t = time.perf_counter()
        frames = pd.read_csv(history_csv), pd.read_csv(audit_csv)
        out["seconds"] = time.perf_counter() - t
        out["rows"] = len(frames[0])
    elif mode == "report":
        from reports import load, pipeline
        from reports.cloudwatch import metrics_document
        from reports.metrics import compute
        from reports.publish import write_local

        t = time.perf_counter()
        history, audit = load.history_from_csv(history_csv), load.audit_from_csv(audit_csv)
        loaded = time.perf_counter()
        numbers = {}
        for env in ENVIRONMENTS:
            report = compute(history, audit, env, NOW, DAYS)
            numbers[env] = pandas_numbers(report.document)
            metrics = metrics_document(env, report.document["window"], "", [])
            write_local(pipeline.render_files(report, metrics), d / "out")
        out["seconds"] = time.perf_counter() - t
        out["load_seconds"] = loaded - t
        passes = []
        for _ in range(2):  # the numbers alone, best of two passes
            t = time.perf_counter()
            for env in ENVIRONMENTS:
                compute(history, audit, env, NOW, DAYS)
            passes.append(time.perf_counter() - t)
        out["compute_seconds"] = min(passes)
        out["numbers"] = numbers
    elif mode == "loop":
        t = time.perf_counter()
        history, audit = loop_load(history_csv, audit_csv)
        loaded = time.perf_counter()
        out["numbers"] = {env: loop_numbers(history, audit, env, DAYS) for env in ENVIRONMENTS}
        out["compute_seconds"] = time.perf_counter() - loaded
        out["seconds"] = time.perf_counter() - t
    elif mode == "store":
        out = store_child(d)
    elif mode == "bare-same-parquet":
        t = time.perf_counter()
        frame = pd.read_parquet(d / "read.parquet")
        out["seconds"] = time.perf_counter() - t
        out["rows"] = len(frame)
    elif mode in ("bare-same", PYTHON_STRINGS):
        t = time.perf_counter()
        frame = pd.read_csv(d / "read.csv")
        out["seconds"] = time.perf_counter() - t
        out["rows"] = len(frame)
        out["arrow_strings"] = getattr(frame["record_id"].dtype, "storage", "") == "pyarrow"
    if "peak_mb" not in out:
        out["peak_mb"] = peak_mb()
    return out


def peak_mb() -> float:
    """This process's own peak resident memory (VmHWM starts afresh at exec; ru_maxrss
    would carry the parent's peak, and the parent holds the generated history)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def store_child(d: Path) -> dict[str, Any]:
    """What ``rollback report --env all`` runs, against the local DynamoDB: read the
    history windows, compute, render and write every file (audit log from CSV)."""
    from reports import load, pipeline
    from reports.cloudwatch import metrics_document
    from reports.metrics import compute
    from reports.publish import write_local
    from rollback.config import load_config
    from rollback.runtime import Runtime

    config = load_config(str(d / "config.yaml"))
    now = pipeline.report_now(NOW)
    t = time.perf_counter()
    runtime = Runtime(config)
    assert runtime.history.client  # the process's first AWS client: once per process
    client = time.perf_counter() - t
    t = time.perf_counter()
    history = pipeline.read_history(runtime, list(ENVIRONMENTS), now, DAYS)
    read = time.perf_counter() - t
    audit = load.audit_from_csv(d / "audit.csv")
    numbers = {}
    for env in ENVIRONMENTS:
        report = compute(history, audit, env, now, DAYS)
        numbers[env] = pandas_numbers(report.document)
        metrics = metrics_document(env, report.document["window"], "", [])
        write_local(pipeline.render_files(report, metrics), d / "out-store")
    import pyarrow as pa

    out = {
        "client_seconds": client,
        "read_seconds": read,
        "arrow_pool": pa.default_memory_pool().backend_name,  # the one the read chose
        "seconds": time.perf_counter() - t,
        "rows": len(history),
        "numbers": numbers,
        "peak_mb": peak_mb(),
    }
    history.to_csv(d / "read.csv", index=False)  # for the bare load of the same rows
    history.to_parquet(d / "read.parquet", index=False)  # and its reference from Parquet
    return out


# -- the local DynamoDB ------------------------------------------------------------------

STORE_TIME = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def store_table(history: pd.DataFrame) -> pd.DataFrame:
    """The history as the store writes it: UTC text times, keys, ``t``, TTL."""
    table = pd.DataFrame(index=history.index)
    for column in ("environment", "service", "version", "status", "kind", "from_version",
                   "trigger", "record_id", "commit_sha"):  # fmt: skip
        table[column] = history[column].astype(object).where(history[column].notna(), None)
    for column in ("committed_at", "started_at", "finished_at"):
        text = history[column].dt.strftime(STORE_TIME)
        table[column] = text.astype(object).where(history[column].notna(), None)
    table["image_tag"] = table["version"]
    table["pk"] = table["environment"] + "#" + table["service"]
    table["sk"] = table["record_id"]
    table["t"] = table["finished_at"]
    expires = history["finished_at"].astype("int64") // 10**9 + 90 * 86400
    table["expires_at"] = expires.astype(str)
    return table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReplayServer:
    def __init__(self, table: Path) -> None:
        self.port = free_port()
        server = Path(__file__).parent / "support" / "dynamo_replay.py"
        self.proc = subprocess.Popen(
            [sys.executable, str(server), str(table), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the replay server did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def reset_days(self) -> None:
        """Back to the day counters alone (no block): the next read is cold again, the
        records' answers it reads already rendered."""
        request = urllib.request.Request(
            self.url, data=b"{}", headers={"x-amz-target": "ReplayBench.ResetDays"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def write_config(d: Path) -> None:
    service = {"type": "ecs", "cluster": "c", "service": "s"}
    config = {
        "stores": {"history_table": "hist", "audit_table": "audit"},
        "environments": {e: {"services": {"svc-0": service}} for e in ENVIRONMENTS},
        "reports": {"out_dir": str(d / "out")},
    }
    (d / "config.yaml").write_text(json.dumps(config))  # JSON is YAML


def aws_env(url: str) -> dict[str, str]:
    return os.environ | {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def wire_check(tmp: Path) -> str:
    """The replay server and the moto server give the same window read of one table."""
    import pyarrow as pa

    from devstack.sandbox import moto_server
    from rollback.stores.history import HistoryStore, record_from_dict

    history, _ = generate(3_000, seed=11)
    table = store_table(history)
    table.to_pickle(tmp / "wire.pkl")
    fields = ("service", "version", "status", "kind", "trigger", "from_version",
              "committed_at", "started_at", "finished_at", "record_id")  # fmt: skip
    start, end = NOW - timedelta(days=60), NOW
    reads: dict[str, Any] = {}
    with moto_server() as url:
        os.environ.update(aws_env(url))
        store = HistoryStore("hist")
        store.ensure(create=True)
        rows = table.drop(columns=["pk", "sk", "t", "expires_at"]).to_dict("records")
        store.import_many([record_from_dict({k: v for k, v in r.items() if v}) for r in rows])
        for read in ("cold", "warm"):  # cold: the blocks are built; warm: read from them
            reads[f"moto, {read}"] = store.read_window("prod", start, end, fields)
        blocks = {"moto": blocks_held(store, "prod", start, end)}
    server = ReplayServer(tmp / "wire.pkl")
    try:
        os.environ["AWS_ENDPOINT_URL"] = server.url
        store = HistoryStore("hist")
        for read in ("cold", "warm"):
            reads[f"replay, {read}"] = store.read_window("prod", start, end, fields)
        blocks["replay"] = blocks_held(store, "prod", start, end)
    finally:
        server.close()
    if blocks["moto"] != blocks["replay"] or not blocks["moto"]:
        raise AssertionError(f"days with a current block differ or are none: {blocks}")
    # values, not encodings: a dictionary column's dictionary depends on how it was built
    reads = {name: plain(table) for name, table in reads.items()}
    first = reads["moto, cold"]
    for name, other in reads.items():
        if not first.equals(other):
            bad = [f for f in fields if not first.column(f).equals(other.column(f))]
            raise AssertionError(f"{name} differs from moto, cold in {bad or 'the schema'}")
    if not pa.types.is_timestamp(first.schema.field("finished_at").type):
        raise AssertionError(f"times came as {first.schema.field('finished_at').type}")
    return (
        f"{first.num_rows} rows, {first.num_columns} columns, "
        f"{first.schema.field('finished_at').type} times: the same cold and warm on both; "
        f"{blocks['moto']} day blocks on both"
    )


def plain(table: Any) -> Any:
    """``table`` with its dictionary columns decoded."""
    import pyarrow as pa

    schema = pa.schema(
        [(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
         for f in table.schema]
    )  # fmt: skip
    return table.cast(schema)


def blocks_held(store: Any, environment: str, start: datetime, end: datetime) -> int:
    """How many days of the window's read hold a current block, as the store judges it."""
    from rollback.stores.history import LOOKBACK
    from rollback.stores.history_days import days_between

    held = store._day_items(environment, days_between(start - LOOKBACK, end))
    return sum(day.block() is not None for day in held.values())


def run_child(mode: str, directory: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(directory)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(proc.stdout))


def best(mode: str, d: Path, runs: int = 2, env: dict[str, str] | None = None) -> dict:
    return min((run_child(mode, d, env) for _ in range(runs)), key=lambda r: r["seconds"])


def store_phase(n: int, d: Path) -> dict[str, Any]:
    """The product's read path against the local DynamoDB: the cold read (it builds the
    day blocks; the server renders and records every answer), then warm reads (replayed)."""
    server = ReplayServer(d / "table.pkl")
    try:
        env = aws_env(server.url)
        run_child("store", d, env)  # the server renders and records the records' answers
        server.reset_days()
        cold = run_child("store", d, env)  # the cold read: every day from records, blocks built
        run_child("store", d, env)  # the server renders and records the blocks' answers
        # Interleaved rounds (warm read, bare load of the same rows, of the whole table),
        # best of each: a busy machine slows both sides of each ratio alike.
        # References only: the same bare load from Parquet, with pandas' Python strings
        # (last: a child right after it started measurably slower, its memory returned).
        rounds = [
            (
                run_child("store", d, env),
                run_child("bare-same", d),
                run_child("bare-same-parquet", d),
                run_child("bare", d),
                run_child(PYTHON_STRINGS, d),
            )
            for _ in range(ROUNDS)
        ]
    finally:
        server.close()
    replay = min((r[0] for r in rounds), key=lambda r: r["read_seconds"])
    same = min((r[1] for r in rounds), key=lambda r: r["seconds"])
    parquet = min((r[2] for r in rounds), key=lambda r: r["seconds"])
    table = min((r[3] for r in rounds), key=lambda r: r["seconds"])
    python = min((r[4] for r in rounds), key=lambda r: r["seconds"])
    if not same["arrow_strings"] or python["arrow_strings"]:
        raise AssertionError("the bare loads did not read the strings they are named for")
    ratios = sorted(r[0]["read_seconds"] / r[1]["seconds"] for r in rounds)
    row = {
        "records": n,
        "rows_read": replay["rows"],
        "rounds_read_bare_s": [(r[0]["read_seconds"], r[1]["seconds"]) for r in rounds],
        "cold_read_s": cold["read_seconds"],
        "cold_peak_mb": cold["peak_mb"],
        "cold_same_numbers": not differences(cold["numbers"], replay["numbers"]),
        "read_s": replay["read_seconds"],
        "client_s": replay["client_seconds"],
        "read_with_client_over_bare_same": (replay["read_seconds"] + replay["client_seconds"])
        / same["seconds"],
        "report_s": replay["seconds"],
        "bare_same_s": same["seconds"],
        "bare_table_s": table["seconds"],
        "read_over_bare_same": replay["read_seconds"] / same["seconds"],
        "read_over_bare_table": replay["read_seconds"] / table["seconds"],
        "read_over_bare_same_median_round": ratios[len(ratios) // 2],
        "bare_same_python_strings_s": python["seconds"],
        "read_over_bare_same_python_strings": replay["read_seconds"] / python["seconds"],
        "bare_same_parquet_s": parquet["seconds"],
        "read_over_bare_same_parquet": replay["read_seconds"] / parquet["seconds"],
        "arrow_pool": replay["arrow_pool"],
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "peak_mb": replay["peak_mb"],
        "numbers": replay["numbers"],
    }
    print(
        f"{n:>9,} records (store): read {row['rows_read']:,} rows warm in {row['read_s']:.2f}s"
        f" (the AWS client, created before it: {row['client_s']:.2f}s; read with it / bare "
        f"load {row['read_with_client_over_bare_same']:.2f}x)"
        f" (cold, building the day blocks: {row['cold_read_s']:.2f}s), whole report "
        f"{row['report_s']:.2f}s; bare load of the same rows {row['bare_same_s']:.2f}s, "
        f"of the whole table "
        f"{row['bare_table_s']:.2f}s; peak {row['peak_mb']:.0f} MB; read / bare load of the "
        f"same rows {row['read_over_bare_same']:.2f}x (goal <= 3x; median of the "
        f"{ROUNDS} interleaved rounds {row['read_over_bare_same_median_round']:.2f}x: read, "
        f"bare {', '.join(f'{a:.2f}/{b:.3f}s' for a, b in row['rounds_read_bare_s'])}); "
        f"reference, bare load with Python strings {python['seconds']:.2f}s "
        f"({row['read_over_bare_same_python_strings']:.2f}x), from Parquet "
        f"{parquet['seconds']:.2f}s ({row['read_over_bare_same_parquet']:.2f}x); "
        f"Arrow memory pool {row['arrow_pool']}; load average {' '.join(row['load_average'])}",
        flush=True,
    )
    return row


def csv_phase(n: int, d: Path) -> dict[str, Any]:
    """The earlier figures: the report from CSV against a bare load and a Python loop."""
    bare, report, loop = best("bare", d), best("report", d), run_child("loop", d)
    diff = differences(report["numbers"], loop["numbers"])
    if diff:
        print(f"{n}: pandas and loop disagree:", *diff[:10], sep="\n  ")
    print(
        f"{n:>9,} records (CSV): bare load {bare['seconds']:.2f}s, report "
        f"{report['seconds']:.2f}s (load {report['load_seconds']:.2f}s, numbers "
        f"{report['compute_seconds']:.2f}s), loop numbers {loop['compute_seconds']:.2f}s, "
        f"peak {report['peak_mb']:.0f} MB, same numbers: {'yes' if not diff else 'NO'}",
        flush=True,
    )
    return {
        "records": n,
        "report_over_bare": report["seconds"] / bare["seconds"],
        "loop_over_pandas": loop["compute_seconds"] / report["compute_seconds"],
        "e2e_loop_over_report": loop["seconds"] / report["seconds"],
        "peak_mb": report["peak_mb"],
        "same": not diff,
        "numbers": report["numbers"],
        "report_s": report["seconds"],
    }


def phase(name: str, failures: list[str], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # a failed phase is reported; the others still run
        failures.append(f"{name}: {exc}")
        print(f"[FAILED] {name}: {exc}", flush=True)
        traceback.print_exc(limit=3)
        return None


def goals_of(store: list[dict], csv_rows: list[dict]) -> dict[str, bool]:
    goals: dict[str, bool] = {}
    if store:
        big = store[-1]
        goals[f"read path <= 3x bare load of the same rows at {big['records']:,}"] = (
            big["read_over_bare_same"] <= 3
        )
        goals[f"peak memory <= 2 GB at {big['records']:,}"] = big["peak_mb"] <= 2048
        goals["cold and warm reads give the same numbers"] = all(
            r["cold_same_numbers"] for r in store
        )
        if len(store) > 1:
            a, b = store[-2], store[-1]
            growth = b["read_s"] / a["read_s"]
            scale = b["records"] / a["records"]
            goals[f"read roughly linear ({a['records']:,} -> {b['records']:,}: x{growth:.1f} "
                  f"for x{scale:.0f})"] = growth <= 1.3 * scale  # fmt: skip
        if csv_rows:
            by_n = {r["records"]: r for r in csv_rows}
            goals["read path gives the CSV path's numbers"] = all(
                not differences(r["numbers"], by_n[r["records"]]["numbers"])
                for r in store
                if r["records"] in by_n
            )
    if csv_rows:
        big = csv_rows[-1]
        goals["CSV: pandas and loop give the same numbers"] = all(r["same"] for r in csv_rows)
        if big["records"] >= 1_000_000:
            goals["CSV: report <= 3x bare load at 1M"] = big["report_over_bare"] <= 3
    return goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--skip-csv", action="store_true", help="only the read path")
    parser.add_argument("--json", action="store_true", help="one-line JSON summary last")
    args = parser.parse_args()
    sizes = [int(x) for x in args.records.split(",") if x]
    started = time.perf_counter()
    failures: list[str] = []
    store_rows: list[dict] = []
    csv_rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        check = phase("wire check (replay vs moto)", failures, wire_check, Path(tmp))
        if check:
            print(f"wire check, replay server vs moto: {check}", flush=True)
        for n in sizes:
            d = Path(tmp) / str(n)
            d.mkdir()
            history, audit = generate(n)
            write_csv(history, d / "history.csv")
            write_csv(audit, d / "audit.csv")
            store_table(history).to_pickle(d / "table.pkl")
            write_config(d)
            del history, audit
            row = phase(f"read path at {n:,}", failures, store_phase, n, d)
            if row:
                store_rows.append(row)
            if not args.skip_csv:
                row = phase(f"CSV path at {n:,}", failures, csv_phase, n, d)
                if row:
                    csv_rows.append(row)
    print()
    print("The product's read path (local DynamoDB, recorded pages replayed):")
    print("| records | rows read | read (warm) | cold read (builds the blocks) | bare load, "
          "same rows | read / bare | AWS client (before the read) | read + client / bare | "
          "reference: bare, Python strings | read / that | "
          "reference: bare, Parquet | read / that | bare load, whole table | "
          "read / whole-table load | whole report | peak MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in store_rows:
        print(
            f"| {r['records']:,} | {r['rows_read']:,} | {r['read_s']:.2f} s | "
            f"{r['cold_read_s']:.2f} s | "
            f"{r['bare_same_s']:.2f} s | {r['read_over_bare_same']:.2f}x | "
            f"{r['client_s']:.2f} s | {r['read_with_client_over_bare_same']:.2f}x | "
            f"{r['bare_same_python_strings_s']:.2f} s | "
            f"{r['read_over_bare_same_python_strings']:.2f}x | "
            f"{r['bare_same_parquet_s']:.2f} s | {r['read_over_bare_same_parquet']:.2f}x | "
            f"{r['bare_table_s']:.2f} s | {r['read_over_bare_table']:.2f}x | "
            f"{r['report_s']:.2f} s | {r['peak_mb']:.0f} |"
        )
    if csv_rows:
        print("\nThe CSV path (earlier figures):")
        print("| records | report / bare load | numbers: loop / pandas | end to end: loop / "
              "report | peak MB | same numbers |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---|")
        for r in csv_rows:
            print(
                f"| {r['records']:,} | {r['report_over_bare']:.2f}x | "
                f"{r['loop_over_pandas']:.1f}x | {r['e2e_loop_over_report']:.1f}x | "
                f"{r['peak_mb']:.0f} | {'yes' if r['same'] else 'NO'} |"
            )
    goals = goals_of(store_rows, csv_rows)
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'MISSED'}] {goal}")
    for failure in failures:
        print(f"  [FAILED] {failure}")
    took = time.perf_counter() - started
    print(f"bench took {took:.0f}s")
    if args.json:
        drop = ("numbers",)
        summary = {
            "bench": "report_scale",
            "store": [{k: v for k, v in r.items() if k not in drop} for r in store_rows],
            "csv": [{k: v for k, v in r.items() if k not in drop} for r in csv_rows],
            "goals": goals,
            "failures": failures,
            "seconds": round(took, 1),
        }
        print(json.dumps(summary, default=lambda v: round(v, 3) if isinstance(v, float) else v))
    return 0 if not failures and all(goals.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
        sys.exit(0)
    sys.exit(main())
