"""A cap on the time the OSC threads spend handling packets, so a flood cannot starve the engine.

Parsing and checking a packet is Python holding the GIL. The engine thread gives the
GIL up in every torch call and must win it back each time; against a receive thread
that always has the next packet ready it waits up to the interpreter's switch
interval (5 ms) per call, and a step of a few hundred calls stretched from 80 ms to
over a second under a flood of large packets (issue 18.33). So the OSC threads
together may be busy at most ``share`` of the time: past it, the thread that just
finished a packet sleeps (releasing the GIL) until the window's share is met again.
A flood then queues (each sender on its own queue, see ``SenderQueues``) instead
of slowing the frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SHARE = 0.25
"""Most of the wall time the OSC threads together spend handling packets."""
WINDOW = 0.02
"""Seconds over which the share is measured (short: a sleep is at most about this long)."""


class Pacer:
    def __init__(self, share: float = SHARE, window: float = WINDOW, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.share, self.window = share, window
        self.clock, self.sleep = clock, sleep
        self.slept = 0.0  # seconds the OSC threads gave back, for tests and logs
        self._lock = threading.Lock()
        self._start = clock()
        self._busy = 0.0

    def handled(self, started: float) -> None:
        """Account for one packet handled since ``started`` (a ``clock()`` reading); sleep when over the share."""
        now = self.clock()
        with self._lock:
            if now - self._start >= self.window:
                self._start, self._busy = started, 0.0
            self._busy += now - started
            wait = self._busy / self.share - (now - self._start)
            if wait > 0:
                self.slept += wait
        if wait > 0:
            self.sleep(wait)
