"""Run a console entry point under cProfile in every thread, timed in thread CPU time.

    python bench/support/profiled.py OUT module:function [args...]

(``deployments.cli.main:main worker --config F`` is ``rollback worker --config F``;
``prefect.cli:app server start`` the Prefect server.) ``cProfile`` alone sees only the
thread that enabled it; here every thread started after this module runs gets its own
profiler (``threading.Thread._bootstrap_inner``), timed with ``time.thread_time`` so a
thread waiting costs nothing. Signals: SIGUSR2 marks the start of the window to
measure (what ran before is subtracted), SIGUSR1 writes ``OUT.prof`` (pstats) and
``OUT-calls.json`` (HTTP requests this process sent, by method and path with ids
replaced, counted over the same window).

    python bench/support/profiled.py --report OUT [--rollbacks N]

prints CPU by package (self time), the top functions, and our stages' cumulative time.
"""

from __future__ import annotations

import cProfile
import importlib
import json
import pstats
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_calls: Counter[str] = Counter()
_window: dict[str, Any] = {"stats": {}, "calls": Counter()}
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def _new_profile() -> cProfile.Profile:
    prof = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(prof)
    prof.enable()
    return prof


def _install() -> None:
    inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def profiled_inner(self: threading.Thread) -> None:
        prof = _new_profile()
        try:
            inner(self)
        finally:
            prof.disable()

    threading.Thread._bootstrap_inner = profiled_inner  # type: ignore[attr-defined]
    import httpx

    for cls in (httpx.Client, httpx.AsyncClient):
        _count_requests(cls)
    signal.signal(signal.SIGUSR2, lambda *_: _mark())
    signal.signal(signal.SIGUSR1, lambda *_: _dump())


def _count_requests(cls: Any) -> None:
    send = cls.send

    def counted(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        _calls[f"{request.method} {_ID.sub('{id}', request.url.path)}"] += 1
        return send(self, request, *args, **kwargs)

    cls.send = counted


def _snapshot() -> dict[Any, Any]:
    """Every thread's stats, summed (pstats' format), without stopping a profiler."""
    total: dict[Any, Any] = {}
    with _lock:
        profiles = list(_profiles)
    for prof in profiles:
        prof.snapshot_stats()  # type: ignore[attr-defined]
        for func, (cc, nc, tt, ct, callers) in prof.stats.items():  # type: ignore[attr-defined]
            old = total.get(func)
            if old is None:
                total[func] = (cc, nc, tt, ct, dict(callers))
                continue
            merged = dict(old[4])
            for caller, value in callers.items():
                merged[caller] = _add(merged.get(caller), value)
            total[func] = (old[0] + cc, old[1] + nc, old[2] + tt, old[3] + ct, merged)
    return total


def _add(a: Any, b: Any, sign: int = 1) -> Any:
    if a is None:
        return b
    if isinstance(a, tuple):
        return tuple(x + sign * y for x, y in zip(a, b, strict=True))
    return a + sign * b


def _mark() -> None:
    _window["stats"] = _snapshot()
    _window["calls"] = Counter(_calls)


def _dump() -> None:
    out = Path(_window["out"])
    base, now = _window["stats"], _snapshot()
    stats: dict[Any, Any] = {}
    for func, (cc, nc, tt, ct, callers) in now.items():
        old = base.get(func)
        if old is not None:
            cc, nc, tt, ct = cc - old[0], nc - old[1], tt - old[2], ct - old[3]
            callers = {k: _add(v, old[4][k], -1) if k in old[4] else v for k, v in callers.items()}
        if nc > 0:
            stats[func] = (cc, nc, tt, ct, callers)
    holder = _Stats(stats)
    pstats.Stats(holder).dump_stats(str(out) + ".prof")  # type: ignore[arg-type]
    calls = Counter(_calls)
    calls.subtract(_window["calls"])
    Path(str(out) + "-calls.json").write_text(json.dumps(dict(calls.most_common()), indent=1))


class _Stats:
    """What ``pstats.Stats`` accepts: an object with ``create_stats`` and ``stats``."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        return None


def run(out: str, entry: str, argv: list[str]) -> None:
    _window["out"] = out
    module, _, attr = entry.partition(":")
    _install()
    main = _new_profile()  # the main thread
    sys.argv = [entry, *argv]
    try:
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        target()
    finally:
        main.disable()


# -- the report ---------------------------------------------------------------------------
OURS = ("flows", "tasks", "rollback", "deployments", "reports")


def package(filename: str) -> str:
    """A short name for where a function lives: our top package, or the library."""
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0].removesuffix(".py")
    for top in OURS:
        if top in parts:
            return f"ours:{top}"
    if filename.startswith("<") or filename == "~":
        return "builtins"
    return "stdlib"


def report(out: str, rollbacks: int, top: int = 25) -> None:
    stats = pstats.Stats(out + ".prof")
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    by_pkg: Counter[str] = Counter()
    for (filename, _, _), (_, _, tt, _, _) in raw.items():
        by_pkg[package(filename)] += tt
    per = max(rollbacks, 1)
    print(f"profile {out}: {total:.2f} CPU s in the window, {total / per:.3f} s per rollback")
    print("self CPU by package (s per rollback):")
    for name, tt in by_pkg.most_common(15):
        print(f"  {name:<28} {tt / per:7.3f}  {100 * tt / max(total, 1e-9):5.1f} %")
    print(f"top {top} functions by self CPU (s per rollback, calls per rollback):")
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (filename, line, name), (_, nc, tt, _, _) in ranked:
        where = f"{package(filename)}:{Path(filename).name}:{line}"
        print(f"  {tt / per:7.4f} {nc / per:8.1f}  {name}  ({where})")
    print("cumulative CPU of our stages and the engine around them (s per rollback):")
    wanted = (
        "run",
        "run_queued",
        "run_rollback",
        "open_audit",
        "prepare",
        "execute",
        "stabilize",
        "verify",
        "record_outcome",
        "notify",
        "ensure_tables",
        "admit",
        "__init__",
    )
    for (filename, line, name), (_, nc, _, ct, _) in sorted(
        raw.items(), key=lambda kv: kv[1][3], reverse=True
    ):
        if name in wanted and package(filename).startswith("ours:"):
            where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}"
            print(f"  {ct / per:7.3f} {nc / per:6.1f}  {name}  ({where})")
    calls = Path(out + "-calls.json")
    if calls.exists():
        counted = json.loads(calls.read_text())
        print(f"HTTP requests to the Prefect API per rollback ({sum(counted.values()) / per:.1f}):")
        for route, n in list(counted.items())[:15]:
            print(f"  {n / per:6.1f}  {route}")


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        n = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--rollbacks" else 1
        report(sys.argv[2], n)
    else:
        run(sys.argv[1], sys.argv[2], sys.argv[3:])
