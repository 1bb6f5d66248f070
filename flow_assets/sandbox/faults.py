"""Faults a sandbox answers instead of the real response, injected by tests: one queue shared
by every sandbox, so `inject(kind, count, path_contains, retry_after, after)` means the same
everywhere (the acceptance suite relies on that)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Fault:
    kind: str
    count: int = 1
    path_contains: str | None = None
    retry_after: float | None = None
    after: int = 0


class FaultQueue:
    def __init__(self, kinds: tuple[str, ...]):
        self.kinds = kinds
        self.served: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self, kind: str, count: int = 1, path_contains: str | None = None,
        retry_after: float | None = None, after: int = 0,
    ) -> None:  # fmt: skip
        """Make the next `count` requests whose path (and query) contain `path_contains`,
        after letting `after` of them pass, fail as `kind`."""
        kind = str(kind)
        if kind not in self.kinds:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {self.kinds}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if not isinstance(after, int) or after < 0:
            raise ValueError("after must be a non-negative integer")
        if retry_after is not None and (
            not isinstance(retry_after, int | float) or retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative number of seconds")
        with self._lock:
            self._faults.append(Fault(kind, count, path_contains, retry_after, after))

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, target: str) -> Fault | None:
        """The fault this request meets, if any (counted as served)."""
        with self._lock:
            for fault in self._faults:
                if fault.path_contains and fault.path_contains not in target:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                self.served[fault.kind] += 1
                return fault
        return None
