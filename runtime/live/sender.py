"""The send thread: engine images -> pixels -> the sink, with every rule that keeps the output honest.

* Conversion runs here (on its own CUDA stream), off the engine's critical path.
* A step whose images are not finite is never sent: its frames go out as
  substitutes (the last good frame, or the input) and the failsafe hears of it.
* A live sink (NDI, Spout) gets the last frame again while nothing new comes,
  so a silent source or a stalled engine never leaves downstream black.
* Output timecodes never go backwards, whatever the source's clock did (an earlier one is sent as the
  last one again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from dreamwire.bridges.base import Frame, Sink
from dreamwire.live.failsafe import Failsafe
from dreamwire.live.outputs import Output, PendingOutputs
from dreamwire.live.slots import LatestSlot
from dreamwire.live.telemetry import Stats
from dreamwire.live.transfer import PinnedRing
from dreamwire.logs import Throttle

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, sink: Sink, slot: LatestSlot[Output | PendingOutputs], stats: Stats, failsafe: Failsafe,
                 download: PinnedRing, *, max_frames: int | None, hold_repeat: float | None, read_timeout: float,
                 on_sent: Callable[[Output], None] | None = None) -> None:
        self.sink = sink
        self.slot = slot
        self.stats = stats
        self.failsafe = failsafe
        self.download = download
        self.max_frames = max_frames
        self.hold = hold_repeat if getattr(sink, "live", False) else None
        self.read_timeout = read_timeout
        self.on_sent = on_sent
        self.sent = 0
        self._report = Throttle(log, level=logging.ERROR)
        self._last: Output | None = None  # the last frame written (for holds and hold substitutes)
        self._last_good: Frame | None = None  # the last engine-made (or bypassed) frame
        self._timecode: int | None = None

    def run(self, engine_done: threading.Event, stop: threading.Event, finished: threading.Event) -> None:
        """Until the engine thread is done (and its last output written), or ``max_frames`` were sent."""
        last_at = time.perf_counter()
        while True:
            item = self.slot.get(min(self.read_timeout, self.hold or self.read_timeout))
            if item is None:
                if engine_done.is_set():
                    return
                if self.hold is not None and self._last is not None and time.perf_counter() - last_at >= self.hold:
                    self._write(replace(self._last, held=True))
                    last_at = time.perf_counter()
                continue
            for out in self._converted(item):
                if self._write(out):
                    last_at = time.perf_counter()
                if self.max_frames is not None and self.sent >= self.max_frames:
                    finished.set()
                    stop.set()
                    return

    def _converted(self, item: Output | PendingOutputs) -> Iterator[Output]:
        """The item's outputs with host pixels; a conversion failure drops the rest of that step's outputs."""
        if isinstance(item, Output):
            yield self._resolved(item)
            return
        try:
            finite = item.is_finite()
        except Exception as exc:
            self._failed("output check", exc)
            return
        if not finite:
            self.failsafe.failed("engine output has NaN/inf values; the frame was not sent")
            self.stats.error()
            yield from (self._resolved(o) for o in item.substitutes(self.failsafe.settings.on_error))
            return
        outs = item.finish(self.download.download)
        while True:
            try:
                out = next(outs)
            except StopIteration:
                return
            except Exception as exc:
                self._failed("output conversion", exc)
                return
            yield out

    def _resolved(self, out: Output) -> Output:
        """A hold substitute takes the last good frame's pixels (the input's when there is none yet)."""
        if out.substitute == "hold" and self._last_good is not None:
            good = self._last_good
            return replace(out, frame=replace(out.frame, pixels=good.pixels, layout=good.layout))
        return out

    def _write(self, out: Output) -> bool:
        frame = out.frame
        if not out.held and frame.timecode is not None:  # never backwards, even across a sender restart
            if self._timecode is not None and frame.timecode < self._timecode:
                frame = replace(frame, timecode=self._timecode)
                out = replace(out, frame=frame)
            self._timecode = frame.timecode
        try:
            self.sink.write(frame)
        except Exception as exc:  # a sink hiccup drops this frame only
            self._failed("sink write", exc)
            return False
        if out.held:
            self.stats.hold()
        else:
            self.stats.sent(time.perf_counter() - frame.capture_time, frame.source_id, substitute=out.substitute)
            self.sent += 1
            if out.substitute is None:
                self._last_good = frame
        self._last = out
        if self.on_sent is not None:
            self.on_sent(out)
        return True

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.error()
        self._report.log("%s failed (frame dropped, loop continues): %s", what, exc, exc_info=exc)
