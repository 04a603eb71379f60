"""The failsafe: when engine steps fail, what goes out instead, when to try again, and the health state.

A live show's rule is that the projector never goes black because of us. So
a failed step (an exception, CUDA out of memory, a TensorRT execution error,
or NaN/inf in the output) never stops the output: the loop sends the last
good frame or the input itself (``on_error``), reports the reason, retries
with a growing pause, and after ``fallback_after`` consecutive failures asks
for the next backend down (tensorrt -> compile -> torch) when the user
allowed that. A watchdog reports a step that takes longer than
``stall_after`` seconds.

Health: ``ok``; ``degraded`` after a failure or a stall, back to ``ok`` after
``recover_after`` seconds without one; ``failing`` while ``failing_after`` or
more steps in a row have failed. Every method is thread-safe: the engine
thread reports exceptions, the send thread reports NaN frames, the watchdog
reports stalls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dreamwire.control.settings import boolean, choice, integer, number, setting

ON_ERROR = ("hold", "passthrough")
HEALTH = ("ok", "degraded", "failing")


@dataclass
class FailsafeSettings:
    """The ``[failsafe]`` table of the config file and the ``--failsafe-*`` flags."""

    on_error: str = setting("hold", "what goes out while the engine fails: hold (the last good frame) or "
                            "passthrough (the input)", choice(ON_ERROR))
    retry_min: float = setting(0.05, "seconds before the first retry after a failure; doubles per failure in a row",
                               number(0.0, 60.0))
    retry_max: float = setting(2.0, "longest pause between retries, in seconds", number(0.0, 600.0))
    failing_after: int = setting(3, "failures in a row that make the health 'failing'", integer(1, 1000))
    fallback: bool = setting(True, "after fallback_after failures in a row, switch to the next backend down "
                             "(tensorrt -> compile -> torch) and say so", boolean)
    fallback_after: int = setting(5, "failures in a row before a backend fallback", integer(1, 1000))
    stall_after: float = setting(2.0, "seconds an engine step may run before the watchdog reports a stall",
                                 number(0.1, 3600.0))
    recover_after: float = setting(5.0, "seconds without failure or stall before health is 'ok' again",
                                   number(0.0, 3600.0))


class Failsafe:
    def __init__(self, settings: FailsafeSettings | None = None, report: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.settings = settings or FailsafeSettings()
        self._report = report or (lambda _reason: None)
        self.clock = clock
        self._lock = threading.Lock()
        self.consecutive = 0
        self.failures = 0
        self.stalls = 0
        self.fallbacks = 0
        self.reason = ""
        self._retry_at = -float("inf")
        self._last_trouble = -float("inf")
        self._reset = False
        self._switch = False
        self._exhausted = False  # a fallback found no backend left: stop asking, keep backing off
        self._stalled_step: float | None = None

    # --- reports ------------------------------------------------------------------------------------

    def failed(self, reason: str) -> None:
        """One step failed: report it, pause before the next try, reset the in-flight frames."""
        s = self.settings
        with self._lock:
            self.consecutive += 1
            self.failures += 1
            self.reason = reason
            now = self.clock()
            self._last_trouble = now
            self._retry_at = now + min(s.retry_max, s.retry_min * 2 ** (self.consecutive - 1))
            self._reset = True
            if s.fallback and not self._exhausted and self.consecutive >= s.fallback_after:
                self._switch = True
        self._report(reason)

    def succeeded(self) -> None:
        with self._lock:
            self.consecutive = 0

    def stalled(self, busy_since: float | None) -> None:
        """The watchdog's tick: report once per step that has run longer than ``stall_after``."""
        if busy_since is None:
            return
        now = self.clock()
        if now - busy_since < self.settings.stall_after:
            return
        with self._lock:
            if self._stalled_step == busy_since:
                return
            self._stalled_step = busy_since
            self.stalls += 1
            self._last_trouble = now
            self.reason = f"engine step running for {now - busy_since:.1f} s (stall)"
            reason = self.reason
        self._report(reason)

    # --- decisions ----------------------------------------------------------------------------------

    def may_step(self) -> bool:
        """False while backing off after a failure: the frame goes out as a substitute instead."""
        return self.clock() >= self._retry_at

    def take_reset(self) -> bool:
        with self._lock:
            reset, self._reset = self._reset, False
            return reset

    def take_switch(self) -> bool:
        """Whether to try the next backend down now; the loop answers with :meth:`switched`."""
        with self._lock:
            switch, self._switch = self._switch, False
            return switch

    def switched(self, backend: str | None) -> None:
        """The fallback's outcome. A new backend starts a fresh failure count (and backoff); with none
        left the count goes on, so the pause keeps doubling to ``retry_max`` and health stays
        'failing', instead of restarting at ``retry_min`` every ``fallback_after`` failures."""
        with self._lock:
            if backend:
                self.consecutive = 0
                self.fallbacks += 1
            else:
                self._exhausted = True
        self._report(f"falling back to backend {backend}" if backend else
                     "no backend left to fall back to; retrying the current one")

    def status(self) -> tuple[str, str]:
        """(health, last reason): what telemetry reports, read together."""
        return self.health, self.reason

    @property
    def health(self) -> str:
        with self._lock:
            if self.consecutive >= self.settings.failing_after:
                return "failing"
            if self.clock() - self._last_trouble < self.settings.recover_after:
                return "degraded"
            return "ok"
