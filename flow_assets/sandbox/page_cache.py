"""A thread-safe LRU cache bounded by bytes and/or entries, counting its hits and misses.

The sandbox keeps rendered query pages in one (bounded by bytes) and evaluated row
selections in another (bounded by entries)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class LruCache:
    """Least recently used entries are evicted first once either bound is exceeded.

    `get` answers None for a miss, so values must never be None themselves.
    """

    def __init__(self, *, max_bytes: int | None = None, max_entries: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, size: int = 0) -> None:
        """Keep `value` (taking `size` bytes); one larger than the whole bound is not kept."""
        if value is None:
            raise ValueError("None cannot be cached: get() answers None for a miss")
        if self.max_bytes is not None and size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, size)
            self.bytes += size
            while (self.max_bytes is not None and self.bytes > self.max_bytes) or (
                self.max_entries is not None and len(self._items) > self.max_entries
            ):
                _, (_, evicted) = self._items.popitem(last=False)
                self.bytes -= evicted

    def clear(self) -> None:
        """Drop every entry (for when the data behind them changes)."""
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def reset_counts(self) -> None:
        with self._lock:
            self.hits = self.misses = 0
