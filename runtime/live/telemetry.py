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

STAT_NAMES = ("fps", "engine_ms", "latency_ms", "delay_frames", "delay_steps", "dropped", "skip_rate", "frames",
              "errors", "health", "ready", "frames_in", "dropped_in", "dropped_out", "steps", "paused", "bypassed",
              "substituted", "osc_errors")
"""What ``/dreamwire/stats/<name>`` and the status line report (documented in docs/osc.md)."""

STAT_DOCS = {
    "fps": "output frames per second: the inverse of the moving average of the interval between sends",
    "engine_ms": "milliseconds per engine step (moving average; device time on CUDA)",
    "latency_ms": "milliseconds from capture of the input each output was made from to its send (moving average)",
    "delay_frames": "input frames that arrived after the one each output was made from, by the time it was sent "
                    "(stream-batch delay + queueing + drops; moving average)",
    "delay_steps": "engine calls between a frame going in and coming out (stream batch: steps - 1)",
    "dropped": "dropped_in + dropped_out",
    "skip_rate": "fraction of recent engine steps the similarity filter skipped",
    "frames": "frames sent so far (engine outputs, bypassed inputs and substitutes; not holds)",
    "errors": "failures so far in a bridge or the engine, NaN/inf outputs included (each reported)",
    "health": "0 ok, 1 degraded (a failure or stall in the last few seconds), 2 failing (several steps in a "
              "row failed); /dreamwire/health carries the words and the last reason",
    "ready": "1 once every shape a live change can reach is compiled/captured (warm-up done), else 0",
    "frames_in": "input frames received so far",
    "dropped_in": "input frames replaced by a newer one before the engine took them",
    "dropped_out": "outputs replaced by a newer one before the sink took them",
    "steps": "engine steps run so far (similarity-filter skips included)",
    "paused": "input frames taken while paused (nothing goes out for them)",
    "bypassed": "input frames sent straight through (bypass)",
    "substituted": "frames sent in place of a failed engine output (the last good frame, or the input)",
    "osc_errors": "OSC packets and messages rejected so far (each also sent as /dreamwire/error)",
}
HEALTH_CODES = {"ok": 0.0, "degraded": 1.0, "failing": 2.0}


class _Ema:
    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)


class Stats:
    """Thread-safe counters and moving averages for one run.

    The counters account for every input frame: each one received is, once
    the loop has stopped, exactly one of dropped_in, paused, bypassed, or an
    input of an engine step (whose outputs are sent, dropped_out, or
    substituted). ``clock`` is injectable so tests can check rates exactly.
    """

    COUNTERS = ("frames_in", "frames_out", "dropped_in", "dropped_out", "held", "steps", "skipped", "errors",
                "paused", "bypassed", "substituted", "delay_steps")

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 health: Callable[[], tuple[str, str]] | None = None) -> None:
        """``health``: (state, reason) words read at each snapshot, e.g. :meth:`Failsafe.status`."""
        self.clock = clock
        self._lock = threading.Lock()
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.ready = False
        self.health: Callable[[], tuple[str, str]] = health or (lambda: ("ok", ""))
        self.engine_s_total = 0.0
        self.first_out: float | None = None
        self.last_out: float | None = None
        self._newest_in: int | None = None
        self._engine = _Ema()
        self._latency = _Ema()
        self._interval = _Ema()
        self._delay = _Ema()
        self._skip = _Ema(0.05)

    def _add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def received(self, frame_id: int | None = None) -> None:
        with self._lock:
            self.frames_in += 1
            if frame_id is not None:
                self._newest_in = frame_id

    def hold(self) -> None:
        """The last output was sent again because no new one came (source silent)."""
        self._add("held")

    def drop(self, where: str) -> None:
        self._add("dropped_in" if where == "in" else "dropped_out")

    def error(self) -> None:
        self._add("errors")

    def pause(self) -> None:
        self._add("paused")

    def bypass(self) -> None:
        self._add("bypassed")

    def step(self, engine_s: float, skipped: bool, delay: int) -> None:
        with self._lock:
            self.steps += 1
            self.delay_steps = delay
            self._skip.add(1.0 if skipped else 0.0)
            if skipped:
                self.skipped += 1
            else:
                self.engine_s_total += engine_s
                self._engine.add(engine_s)

    def sent(self, latency_s: float, source_id: int | None = None, substitute: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            self.frames_out += 1
            if substitute is not None:
                self.substituted += 1
            if self.last_out is not None:
                self._interval.add(now - self.last_out)
            if self.first_out is None:
                self.first_out = now
            self.last_out = now
            self._latency.add(latency_s)
            if source_id is not None and self._newest_in is not None:
                self._delay.add(max(0, self._newest_in - source_id))

    def snapshot(self) -> dict[str, float | str]:
        """Every statistic in :data:`STAT_NAMES` as a float, plus ``health_state``/``health_reason`` words."""
        state, reason = self.health()
        with self._lock:
            interval = self._interval.value
            stale = self.last_out is None or self.clock() - self.last_out > 2.0
            return {
                "fps": 0.0 if stale or not interval else 1.0 / interval,
                "engine_ms": 1000.0 * (self._engine.value or 0.0),
                "latency_ms": 1000.0 * (self._latency.value or 0.0),
                "delay_frames": float(self._delay.value or 0.0),
                "delay_steps": float(self.delay_steps),
                "dropped": float(self.dropped_in + self.dropped_out),
                "skip_rate": float(self._skip.value or 0.0),
                "frames": float(self.frames_out),
                "errors": float(self.errors),
                "health": HEALTH_CODES[state],
                "ready": float(self.ready),
                "frames_in": float(self.frames_in),
                "dropped_in": float(self.dropped_in),
                "dropped_out": float(self.dropped_out),
                "steps": float(self.steps),
                "paused": float(self.paused),
                "bypassed": float(self.bypassed),
                "substituted": float(self.substituted),
                "health_state": state,
                "health_reason": reason,
            }

    def status_line(self) -> str:
        s = self.snapshot()
        return (f"{s['fps']:5.1f} fps | engine {s['engine_ms']:6.1f} ms | latency {s['latency_ms']:6.1f} ms "
                f"| skip {100 * s['skip_rate']:4.1f}% | out {int(s['frames'])}"
                f"{drop_words(int(s['dropped_in']), int(s['dropped_out']))}"
                f" | errors {int(s['errors'])} | {s['health_state']}")


def drop_words(dropped_in: int, dropped_out: int) -> str:
    """The status line's words for dropped frames, or "" when none were.

    A bare "dropped 104" reads like a fault, yet it is the normal state of a
    live loop whose source outpaces the engine (only the newest frame is
    worth computing). So the line names the cause instead of the symptom.
    """
    words = ""
    if dropped_in:
        words += f" | source faster than engine: {dropped_in} input frames not used"
    if dropped_out:
        words += f" | sink slower than engine: {dropped_out} outputs replaced before sending"
    return words


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
