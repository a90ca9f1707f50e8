"""A bounded, thread-safe in-memory cache of per-image results, keyed by content."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np


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
