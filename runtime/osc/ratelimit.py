"""Per-key token buckets under a shared cap: how many replies a sender may get back, whatever it sends.

A ``status`` request of a few bytes is answered with every parameter and
statistic (kilobytes), so without a limit any host that can reach the port
could use dreamwire to flood a third party with spoofed-source requests.

A key is one sender (address and port for UDP, one connection for TCP), so
TouchDesigner and a flooding client on the same PC have their own budgets. The
``total`` cap bounds what all of them get together; when more senders are active
than it allows at ``rate`` each, every active sender's rate shrinks to an equal
share, so a crowd of flooders slows a quiet client down but never starves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

ACTIVE_WINDOW = 1.0
"""Seconds since its last request for which a sender counts as active (for the equal share)."""
RECOUNT_PERIOD = 0.1
"""Seconds between recounts of the active senders (a count is O(keys))."""


class RateLimit:
    """``allow(key)`` is True at most ``burst`` times at once and ``rate`` times a second after that, per key;
    with ``total``, each of the keys active in the last second gets at most ``total / active`` of both, so
    all keys together stay near ``total`` a second and each still gets its share."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.perf_counter,
                 max_keys: int = 4096, total: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.total = total
        self.clock = clock
        self.max_keys = max_keys
        self.refused = 0
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, last request)
        self._active = 0
        self._counted = float("-inf")

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        with self._lock:
            known = self._buckets.get(key)
            if known is None:
                self._active += 1  # counted at once: a crowd of new senders shares from its first request
            rate, burst = self._share(now, new=known is None)
            tokens, last = known if known is not None else (burst, now)
            tokens = min(burst, tokens + (now - last) * rate)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self._buckets) > self.max_keys:  # forget the oldest senders rather than grow without bound
                for stale in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: len(self._buckets) // 2]:
                    del self._buckets[stale]
            if not ok:
                self.refused += 1
            return ok

    def _share(self, now: float, new: bool) -> tuple[float, float]:
        """Each key's rate and burst now: ``rate`` and ``burst``, or an equal share of ``total``."""
        if self.total is None:
            return self.rate, self.burst
        if now - self._counted >= RECOUNT_PERIOD:
            self._active = sum(1 for _, last in self._buckets.values() if now - last <= ACTIVE_WINDOW) + new
            self._counted = now
        share = self.total / max(1, self._active)
        return min(self.rate, share), min(self.burst, max(1.0, share))
