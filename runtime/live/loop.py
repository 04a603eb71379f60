"""The live frame loop: receive -> engine -> send, three threads that never wait on each other.

Frames move through :class:`LatestSlot` objects that hold one item: a newer
frame replaces an unread one and the replacement is counted as a drop. So a
slow source starves nobody, a slow sink costs dropped frames instead of
engine steps, and the engine thread only ever waits for its input slot,
never on a socket or a file.

Pixels change format in :mod:`dreamwire.live.imageops` only, on the engine's
device: input conversion and resizing on the engine thread right before the
step, output conversion (and resizing back to the input's size) on the send
thread, so the engine can start its next step while the last output is
turned into pixels and shipped.

Control changes reach the engine as whole :class:`~dreamwire.control.params.Params`
snapshots, checked between steps: everything one OSC bundle changed lands on
the same step, and a change that arrives mid-step applies before the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from dreamwire.bridges.base import Frame, Sink, Source
from dreamwire.control.params import Params
from dreamwire.live.imageops import to_model_input
from dreamwire.live.outputs import Output, PendingOutputs
from dreamwire.live.slots import LatestSlot
from dreamwire.live.state import ControlState
from dreamwire.live.telemetry import Stats
from dreamwire.live.timing import StepTimer
from dreamwire.live.transfer import PinnedRing, mark_done, thread_stream
from dreamwire.logs import Throttle

log = logging.getLogger(__name__)

OUTPUT_SIZES = ("input", "engine")


@dataclass
class LoopOptions:
    max_frames: int | None = None  # stop after this many frames were sent
    output_size: str = "input"  # "input": resize outputs back to each input's size; "engine": leave them
    read_timeout: float = 0.1
    # A live sink (NDI, Spout) gets the last output again after this long without a new one, so a
    # dropped source never leaves downstream without frames; None turns it off.
    hold_repeat: float | None = 0.25

    def __post_init__(self) -> None:
        if self.output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {self.output_size!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError("max_frames must be >= 1")


class FrameLoop:
    """Runs an engine live between an opened source and sink until :meth:`stop` (or ``max_frames``).

    ``engine`` is a :class:`~dreamwire.engine.stream.StreamEngine` or anything with the
    same ``update``/``step``/``config``/``device``/``dtype``. The loop takes
    ownership of the bridges: :meth:`stop` closes them. ``on_sent`` sees every
    :class:`Output` after the sink took it.
    """

    def __init__(self, engine: Any, source: Source, sink: Sink, control: ControlState,
                 options: LoopOptions | None = None, stats: Stats | None = None,
                 on_sent: Callable[[Output], None] | None = None, timer: StepTimer | None = None) -> None:
        self.engine = engine
        self.source = source
        self.sink = sink
        self.control = control
        self.options = options or LoopOptions()
        self.stats = stats or Stats()
        self.on_sent = on_sent
        self.finished = threading.Event()  # set when max_frames were sent, or the loop stopped
        self._stop = threading.Event()
        self._engine_done = threading.Event()
        self._in: LatestSlot[Frame] = LatestSlot()
        self._out: LatestSlot[Output | PendingOutputs] = LatestSlot()
        self._threads = [
            threading.Thread(target=self._receive, name="dreamwire-receive", daemon=True),
            threading.Thread(target=self._engine_loop, name="dreamwire-engine", daemon=True),
            threading.Thread(target=self._send, name="dreamwire-send", daemon=True),
        ]
        self._stopped = False
        self._closed: set[str] = set()
        self._close_lock = threading.Lock()
        self._device = torch.device(getattr(engine, "device", "cpu"))
        self._timer = timer or StepTimer(self._device)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FrameLoop:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 8.0) -> None:
        """Stop the threads (the send thread flushes the last finished frame), then close the bridges."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.1, deadline - time.monotonic()))
                if t.is_alive():
                    log.warning("%s did not stop within %.0f s; closing bridges anyway", t.name, timeout)
        for name in ("source", "sink"):  # normally closed by their own threads already
            self._close(name)
        self.finished.set()

    def _close(self, name: str) -> None:
        """Close a bridge once. Its own thread does it on exit, because some bridges (Spout's GL
        context) belong to the thread that used them; :meth:`stop` only catches a thread that hung."""
        with self._close_lock:
            if name in self._closed:
                return
            self._closed.add(name)
        try:
            getattr(self, name).close()
        except Exception as exc:  # a bridge failing to close must not hide the other's close
            log.error("closing the %s failed: %s", name, exc)

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def _failed(self, report: Throttle, what: str, exc: BaseException) -> None:
        self.stats.error()
        report.log("%s failed (frame skipped, loop continues): %s", what, exc, exc_info=exc)

    # --- receive -------------------------------------------------------------------------------

    def _receive(self) -> None:
        report = Throttle(log, level=logging.ERROR)
        on_demand = bool(getattr(self.source, "on_demand", False))
        timeout = self.options.read_timeout
        try:
            while not self._stop.is_set():
                # File-like sources make frames on demand: make the next only once the engine took the last.
                if on_demand and not self._in.wait_empty(timeout):
                    continue
                try:
                    frame = self.source.read(timeout)
                except Exception as exc:  # any bridge failure: count it, back off, keep the loop alive
                    self._failed(report, "source read", exc)
                    self._stop.wait(timeout)
                    continue
                if frame is None:
                    continue
                self.stats.received()
                if self._in.put(frame):
                    self.stats.drop("in")
        finally:
            self._close("source")

    # --- engine --------------------------------------------------------------------------------

    def _engine_loop(self) -> None:
        report = Throttle(log, level=logging.ERROR)
        per_call = int(getattr(getattr(self.engine, "config", None), "frames", 1))
        upload = PinnedRing(self._device)
        version: int | None = None
        batch: list[Frame] = []  # inputs gathered for the next call (frame_buffer_size > 1)
        seq = 0
        try:
            with thread_stream(self._device):
                while not self._stop.is_set():
                    frame = self._in.get(self.options.read_timeout)
                    if frame is None:
                        continue
                    try:
                        v, params = self.control.snapshot()
                        if v != version:
                            version = v  # set first: a failing update must not be retried every frame
                            self.engine.update(params)
                        if params.pause:
                            continue
                        if params.bypass:
                            batch.clear()
                            out: Output | PendingOutputs = Output(
                                replace(frame, frame_id=seq, source_id=frame.frame_id), params, bypass=True)
                        else:
                            batch.append(frame)
                            if len(batch) < per_call:
                                continue
                            out, batch = self._process(batch, params, seq, upload), []
                    except Exception as exc:  # one bad frame or engine hiccup must not end a live show
                        batch.clear()
                        self._failed(report, "engine step", exc)
                        continue
                    seq += per_call if isinstance(out, PendingOutputs) else 1
                    if self._out.put(out):
                        self.stats.drop("out")
        finally:
            self._engine_done.set()

    def _process(self, frames: list[Frame], params: Params, seq: int, upload: PinnedRing) -> PendingOutputs:
        eng = self.engine
        size = (eng.config.height, eng.config.width)
        if getattr(eng.config, "mode", "img2img") == "txt2img":
            x = None  # the source only paces the stream and sets the output size
        else:
            x = torch.cat([to_model_input(upload.upload(f.pixels), f.layout, size, eng.device, eng.dtype)
                           for f in frames])
        with self._timer.step():
            result = eng.step(x, sources=frames)
        self.stats.step(self._timer.last, result.skipped, result.delay)
        outs = [Output(Frame(None, f.layout, seq + i, src.capture_time, src.timecode, source_id=src.frame_id,
                             frame_rate=src.frame_rate, sender=src.sender),
                       params, skipped=result.skipped, delay=result.delay)
                for i, (f, src) in enumerate(zip(frames, result.sources))]
        sizes = [f.size if self.options.output_size == "input" else None for f in frames]
        return PendingOutputs(result.images, sizes, outs, ready=mark_done(self._device))

    # --- send ----------------------------------------------------------------------------------

    def _send(self) -> None:
        with thread_stream(self._device):
            self._send_outputs(PinnedRing(self._device))

    def _send_outputs(self, download: PinnedRing) -> None:
        report = Throttle(log, level=logging.ERROR)
        sent = 0
        hold = self.options.hold_repeat if getattr(self.sink, "live", False) else None
        last: Output | None = None
        last_at = time.monotonic()
        try:
            while True:
                item = self._out.get(min(self.options.read_timeout, hold or self.options.read_timeout))
                if item is None:
                    if self._engine_done.is_set():
                        return
                    if hold is not None and last is not None and time.monotonic() - last_at >= hold:
                        self._repeat(last, report)
                        last_at = time.monotonic()
                    continue
                for out in self._converted(item, download, report):
                    try:
                        self.sink.write(out.frame)
                    except Exception as exc:  # a sink hiccup drops this frame only
                        self._failed(report, "sink write", exc)
                        continue
                    self.stats.sent(time.monotonic() - out.frame.capture_time)
                    last, last_at = out, time.monotonic()
                    if self.on_sent is not None:
                        self.on_sent(out)
                    sent += 1
                    if self.options.max_frames is not None and sent >= self.options.max_frames:
                        self.finished.set()
                        self._stop.set()
                        return
        finally:
            self._close("sink")

    def _converted(self, item: Output | PendingOutputs, download: PinnedRing, report: Throttle
                   ) -> Iterator[Output]:
        """The item's outputs with host pixels; a conversion failure drops the rest of that step's outputs."""
        if isinstance(item, Output):
            yield item
            return
        outs = item.finish(download.download)
        while True:
            try:
                out = next(outs)
            except StopIteration:
                return
            except Exception as exc:
                self._failed(report, "output conversion", exc)
                return
            yield out

    def _repeat(self, out: Output, report: Throttle) -> None:
        """Send the last output again (``held``): the source is silent, the show goes on."""
        try:
            self.sink.write(out.frame)
            self.stats.hold()
        except Exception as exc:
            self._failed(report, "sink write", exc)
            return
        if self.on_sent is not None:
            self.on_sent(replace(out, held=True))
