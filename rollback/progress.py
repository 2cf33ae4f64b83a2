"""Progress lines for whoever watches a run (the CLI prints them as they happen)."""

from __future__ import annotations

from collections.abc import Callable

_listeners: list[Callable[[str], None]] = []


def subscribe(listener: Callable[[str], None]) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def emit(line: str) -> None:
    for listener in list(_listeners):
        listener(line)
