"""What the local-stack tests read off runs: when a rollback changed something, and how
many runs overlapped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollback.models import parse_iso


def change_window(transitions: Any) -> tuple[datetime, datetime] | None:
    """From the executing transition to the final one (None: never changed anything)."""
    stamps = {status: parse_iso(ts) for status, ts in transitions}
    start = stamps.get("executing")
    end = stamps.get("succeeded") or stamps.get("failed") or stamps.get("interrupted")
    return (start, end) if start and end else None


def max_parallel(runs: list[dict[str, Any]]) -> int:
    """The most flow runs that were running at one moment."""
    edges = []
    for run in runs:
        edges += [(parse_iso(run["start_time"]), 1), (parse_iso(run["end_time"]), -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak
