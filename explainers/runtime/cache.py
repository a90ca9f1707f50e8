"""Where the engine keeps what it computed: bounded, thread-safe in-memory caches keyed by content, one
computation per key across sessions, and the folder for files it derives (converted models, uploads)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs


class ResultCache:
    """Least-recently-used entries up to ``max_bytes`` of NumPy payload."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: tuple, value: Any, payload: np.ndarray) -> None:
        with self._lock:
            if key in self._entries:
                self._total -= self._sizes.pop(key)
                del self._entries[key]
            self._entries[key] = value
            self._sizes[key] = payload.nbytes
            self._total += payload.nbytes
            while self._total > self.max_bytes and len(self._entries) > 1:
                old, _ = self._entries.popitem(last=False)
                self._total -= self._sizes.pop(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._total = 0

    def __len__(self) -> int:
        return len(self._entries)


class SingleFlight:
    """One computation per key at a time: a second caller with the same key waits for the first.

    Sessions that open the same view at once ask for the same maps; without this
    each would compute them, multiplying the work by the number of viewers.
    Callers re-check their cache once they hold the key.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple, list] = {}  # key -> [lock, holders]

    @contextlib.contextmanager
    def hold(self, key: tuple):
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


CACHE_ENV = "ATTRIBUTION_DASHBOARD_CACHE"


def cache_dir() -> Path:
    """The per-user cache folder; ``$ATTRIBUTION_DASHBOARD_CACHE`` overrides it."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("attribution-dashboard"))
