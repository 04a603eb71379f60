"""Logging that stays readable during a long show: rate-limited repeats and state-change lines.

A live rig can fail the same way thousands of times (a flood of bad OSC, a
sink that is gone, a sender that keeps vanishing). :class:`Throttle` logs a
burst in full and then one count per window; :class:`StateLog` logs only
when a named state changes ("waiting" -> "connected" -> "lost"). Both are
used by every layer, so they sit at the bottom with no dreamwire imports.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class Throttle:
    """At most ``burst`` lines per ``window`` seconds; the rest become one "N more" line per window."""

    def __init__(self, logger: logging.Logger, *, burst: int = 3, window: float = 10.0,
                 level: int = logging.WARNING) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.level = level
        self.total = 0
        self._start = -float("inf")
        self._count = 0
        self._suppressed = 0

    def log(self, msg: str, *args: Any, exc_info: BaseException | None = None) -> None:
        now = time.perf_counter()
        if now - self._start >= self.window:
            if self._suppressed:
                self.logger.log(self.level, "... %d more like this in the last %.0f s", self._suppressed,
                                self.window)
            self._start, self._count, self._suppressed = now, 0, 0
        self._count += 1
        self.total += 1
        if self._count <= self.burst:
            self.logger.log(self.level, msg, *args, exc_info=exc_info)
        else:
            self._suppressed += 1


class StateLog:
    """Logs a line only when the named state changes (waiting -> connected -> lost ...)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.state: str | None = None

    def enter(self, state: str, message: str, level: int = logging.INFO) -> bool:
        """Switch to ``state``; log ``message`` if that is a change. Returns whether it changed."""
        if state == self.state:
            return False
        self.state = state
        self._logger.log(level, message)
        return True
