"""Per-key token buckets: how many replies a sender may get back, whatever it sends.

A ``status`` request of a few bytes is answered with every parameter and
statistic (kilobytes), so without a limit any host that can reach the port
could use dreamwire to flood a third party with spoofed-source requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class RateLimit:
    """``allow(key)`` is True at most ``burst`` times at once and ``rate`` times a second after that, per key."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self.refused = 0
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self._buckets) > self.max_keys:  # forget the oldest senders rather than grow without bound
                for stale in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: len(self._buckets) // 2]:
                    del self._buckets[stale]
            if not ok:
                self.refused += 1
            return ok
