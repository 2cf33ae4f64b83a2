"""How the metrics report scales: 10k, 100k and 1M deployment records.

For each size, a realistic history (2 environments, 20 services, ~7% failed deploys,
~4% rollbacks, most of them reverting the deploy before) and its audit log are written
as CSV, then, each in a fresh child process (so peak memory is the report's own):

- bare load: ``pd.read_csv`` of both files, nothing else;
- report: load through ``reports.load``, compute every number for every environment,
  render and write all files (JSON, markdown, PNG);
- numbers only: ``reports.metrics.compute`` on the loaded frames, against a
  straightforward per-record Python loop computing the same numbers from the same rows
  (checked equal before any time is reported).

Goals: report <= 3x bare load at 1M, peak memory <= 2 GB, 100k -> 1M roughly linear,
pandas >= 20x faster than the loop. Run: ``.venv/bin/python bench/report_scale.py``.
"""

from __future__ import annotations

import csv
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (10_000, 100_000, 1_000_000)
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
    df["from_version"] = np.where(rollback, np.where(mismatched, previous, version), None)
    df["status"] = np.where(rng.random(n) < np.where(rollback, 0.1, 0.07), "failed", "success")
    df["trigger"] = np.where(rollback, rng.choice(TRIGGERS, n, p=(0.4, 0.3, 0.2, 0.1)), None)
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
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(mode: str, directory: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout)


def main() -> int:
    started = time.perf_counter()
    rows = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            d = Path(tmp) / str(n)
            d.mkdir()
            history, audit = generate(n)
            write_csv(history, d / "history.csv")
            write_csv(audit, d / "audit.csv")
            del history, audit
            bare = min((run_child("bare", d) for _ in range(2)), key=lambda r: r["seconds"])
            report = min((run_child("report", d) for _ in range(2)), key=lambda r: r["seconds"])
            loop = run_child("loop", d)
            diff = differences(report["numbers"], loop["numbers"])
            if diff:
                ok = False
                print(f"{n}: pandas and loop disagree:", *diff[:10], sep="\n  ")
            rows.append((n, bare, report, loop, not diff))
            print(
                f"{n:>9,} records: bare load {bare['seconds']:.2f}s, report "
                f"{report['seconds']:.2f}s (load {report['load_seconds']:.2f}s, numbers "
                f"{report['compute_seconds']:.2f}s), loop numbers {loop['compute_seconds']:.2f}s"
                f" (+ load {loop['seconds'] - loop['compute_seconds']:.2f}s), peak "
                f"{report['peak_mb']:.0f} MB, same numbers: {'yes' if not diff else 'NO'}",
                flush=True,
            )
    print()
    print("| records | report / bare load | numbers: loop / pandas | end to end: loop / "
          "report | peak MB | same numbers |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---|")
    for n, bare, report, loop, same in rows:
        print(
            f"| {n:,} | {report['seconds'] / bare['seconds']:.2f}x | "
            f"{loop['compute_seconds'] / report['compute_seconds']:.1f}x | "
            f"{loop['seconds'] / report['seconds']:.1f}x | {report['peak_mb']:.0f} | "
            f"{'yes' if same else 'NO'} |"
        )
    (n1, _, r1, _, _), (n2, _, r2, _, _) = rows[-2], rows[-1]
    growth = r2["seconds"] / r1["seconds"]
    print(f"\nreport time {n1:,} -> {n2:,} records ({n2 // n1}x): x{growth:.1f}")
    big_bare, big_report, big_loop = rows[-1][1], rows[-1][2], rows[-1][3]
    goals = {
        "report <= 3x bare load at 1M": big_report["seconds"] <= 3 * big_bare["seconds"],
        "peak memory <= 2 GB": big_report["peak_mb"] <= 2048,
        "roughly linear (<= 13x for 10x records)": growth <= 13,
        "numbers >= 20x faster than the loop at 1M": big_loop["compute_seconds"]
        >= 20 * big_report["compute_seconds"],
        "pandas and loop give the same numbers": all(r[4] for r in rows),
    }
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'MISSED'}] {goal}")
    print(f"bench took {time.perf_counter() - started:.0f}s")
    return 0 if ok and all(goals.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
        sys.exit(0)
    sys.exit(main())
