"""Live statistics of the frame loop, shared by the terminal status line, OSC telemetry and benchmarks.

One :class:`Stats` object is written by the loop's three threads and read by
whoever reports; every method takes the lock briefly and never blocks on I/O.
Rates are exponential moving averages so one slow frame doesn't dominate and
a stall shows up within a second or two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STAT_NAMES = ("fps", "engine_ms", "latency_ms", "dropped", "skip_rate", "frames", "errors", "delay_frames", "ready")
"""What ``/dreamwire/stats/<name>`` and the status line report (documented in docs/osc.md)."""

STAT_DOCS = {
    "fps": "output frames per second (moving average)",
    "engine_ms": "milliseconds per engine step (moving average)",
    "latency_ms": "capture-to-send latency of the source frame each output came from (moving average)",
    "dropped": "frames dropped so far: input replaced before the engine read it + output replaced before send",
    "skip_rate": "fraction of recent engine steps the similarity filter skipped",
    "frames": "output frames sent so far",
    "errors": "frames that failed in a bridge or the engine so far (each logged, loop kept going)",
    "delay_frames": "stream-batch delay: the output is from the input this many frames earlier (n-1)",
    "ready": "1 once every shape a live change can reach is compiled/captured (warm-up done), else 0",
}


class _Ema:
    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)


class Stats:
    """Thread-safe counters and moving averages for one run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_in = 0
        self.dropped_out = 0
        self.held = 0
        self.steps = 0
        self.skipped = 0
        self.errors = 0
        self.delay_frames = 0
        self.ready = False
        self.engine_s_total = 0.0
        self.first_out: float | None = None
        self.last_out: float | None = None
        self._engine = _Ema()
        self._latency = _Ema()
        self._interval = _Ema()
        self._skip = _Ema(0.05)

    def received(self) -> None:
        with self._lock:
            self.frames_in += 1

    def hold(self) -> None:
        """The last output was sent again because no new one came (source silent)."""
        with self._lock:
            self.held += 1

    def drop(self, where: str) -> None:
        with self._lock:
            if where == "in":
                self.dropped_in += 1
            else:
                self.dropped_out += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def step(self, engine_s: float, skipped: bool, delay: int) -> None:
        with self._lock:
            self.steps += 1
            self.delay_frames = delay
            self._skip.add(1.0 if skipped else 0.0)
            if skipped:
                self.skipped += 1
            else:
                self.engine_s_total += engine_s
                self._engine.add(engine_s)

    def sent(self, latency_s: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.frames_out += 1
            if self.last_out is not None:
                self._interval.add(now - self.last_out)
            if self.first_out is None:
                self.first_out = now
            self.last_out = now
            self._latency.add(latency_s)

    def snapshot(self) -> dict[str, float]:
        """Every statistic in :data:`STAT_NAMES`, plus a few raw counters, as plain numbers."""
        with self._lock:
            interval = self._interval.value
            stale = self.last_out is None or time.monotonic() - self.last_out > 2.0
            return {
                "fps": 0.0 if stale or not interval else 1.0 / interval,
                "engine_ms": 1000.0 * (self._engine.value or 0.0),
                "latency_ms": 1000.0 * (self._latency.value or 0.0),
                "dropped": float(self.dropped_in + self.dropped_out),
                "skip_rate": float(self._skip.value or 0.0),
                "frames": float(self.frames_out),
                "errors": float(self.errors),
                "delay_frames": float(self.delay_frames),
                "ready": float(self.ready),
                "dropped_in": float(self.dropped_in),
                "dropped_out": float(self.dropped_out),
                "frames_in": float(self.frames_in),
                "steps": float(self.steps),
            }

    def status_line(self) -> str:
        s = self.snapshot()
        return (f"{s['fps']:5.1f} fps | engine {s['engine_ms']:6.1f} ms | latency {s['latency_ms']:6.1f} ms "
                f"| skip {100 * s['skip_rate']:4.1f}% | dropped {int(s['dropped'])} | out {int(s['frames'])}"
                f" | errors {int(s['errors'])}")


class Ticker:
    """Calls ``fn`` every ``period`` seconds on its own daemon thread until :meth:`stop`.

    Used for OSC telemetry and the terminal status line, so neither ever runs
    on the engine thread.
    """

    def __init__(self, period: float, fn: Callable[[], None], name: str = "ticker") -> None:
        self.period = period
        self.fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.fn()
            except OSError as exc:  # e.g. telemetry target unreachable: report, keep ticking
                log.warning("%s: %s", self._thread.name, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
