"""A dict that forgets its oldest entries: caches and memories that must not grow."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

_V = TypeVar("_V")


class BoundedMap(OrderedDict[str, _V]):
    """A dict that forgets its oldest entries past ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
