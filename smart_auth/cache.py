"""`Recent`: what a loader answered within the last `staleness` seconds, per key.

The token, introspection and revocation endpoints look up the calling client (and the refresh
grant its account) on every request. Registrations change rarely, so each process keeps what it
read for at most a second: a change made elsewhere (another worker, the CLI) is seen within that
bound, like a revoked token (ARCHITECTURE.md item 8), and a change made here is seen at once
(`forget`). Unknown keys are remembered too, so a flood of made-up client ids costs one query per
id and second, and the size bound evicts the oldest entry first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, staleness: float, size: int = 4096) -> None:
        self.staleness = staleness
        self.size = size
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def fetch(self, key: K, load: Callable[[], V]) -> V:
        """The value loaded for `key` within `staleness` seconds, else `load()` (remembered)."""
        hit = self._items.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.staleness:
            return hit[1]
        loaded_at = time.monotonic()  # before the load: the bound counts from the read
        value = load()
        with self._lock:
            self._items.pop(key, None)
            if len(self._items) >= self.size:
                del self._items[next(iter(self._items))]
            self._items[key] = (loaded_at, value)
        return value

    def forget(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)
