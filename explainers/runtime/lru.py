"""A cache of a few heavy objects (compiled probes, traced models), bounded by their number rather than by bytes:
what they hold (graphs, traced functions) has no NumPy payload to weigh, unlike ``cache.ResultCache``'s results."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class LruCache(Generic[Value]):
    """Up to ``max_entries`` values, the least recently used dropped first; thread-safe.

    ``get_or_make`` builds a missing value under the cache's lock, so two sessions asking for the same key at once
    build it once.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"an LruCache holds at least one entry; got max_entries={max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], Value]) -> Value:
        """The value kept for ``key``, or ``make()``'s, kept (a ``make`` that raises keeps nothing)."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = make()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            return self._entries[key]

    def get(self, key: Hashable) -> Value | None:
        """The value kept for ``key``, or None; looking does not count as a use (an estimate only looks)."""
        with self._lock:
            return self._entries.get(key)

    def items(self) -> list[tuple[Hashable, Value]]:
        """A snapshot of the entries, least recently used first."""
        with self._lock:
            return list(self._entries.items())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
