"""The live frame loop: receive -> engine -> send, three threads that never wait on each other.

Frames move through :class:`LatestSlot` objects that hold one item: a newer
frame replaces an unread one and the replacement is counted as a drop. So a
slow source starves nobody, a slow sink costs dropped frames instead of
engine steps, and the engine thread only ever waits for its input slot,
never on a socket or a file.

Pixels change format in :mod:`dreamwire.live.imageops` only, on the engine's
device: input conversion right before the step on the engine thread, output
conversion on the send thread (:mod:`dreamwire.live.sender`), so the engine
can start its next step while the last output is turned into pixels.

Control changes reach the engine as whole :class:`~dreamwire.control.params.Params`
snapshots, checked between steps: everything one OSC bundle changed lands on
the same step. When the input jumps (bypass or pause ends, the source or its
size changes) the engine's in-flight frames are dropped, so no stale picture
comes out. A failing engine never stops the output (:mod:`dreamwire.live.failsafe`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from dreamwire.bridges.base import Frame, Sink, Source
from dreamwire.control.params import Params
from dreamwire.engine.api import Engine
from dreamwire.live.controlnet_feed import ControlNetFeed
from dreamwire.live.failsafe import Failsafe
from dreamwire.live.imageops import to_model_input
from dreamwire.live.options import LoopOptions
from dreamwire.live.outputs import Output, PendingOutputs, substitute
from dreamwire.live.sender import Sender
from dreamwire.live.slots import LatestSlot
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import Stats, Ticker
from dreamwire.live.timing import StepTimer
from dreamwire.live.transfer import PinnedRing, mark_done, thread_stream
from dreamwire.logs import Throttle

log = logging.getLogger(__name__)

class FrameLoop:
    """Runs an engine live between an opened source and sink until :meth:`stop` (or ``max_frames``).

    ``engine`` is anything that meets the :class:`~dreamwire.engine.api.Engine` protocol. The loop
    takes ownership of the bridges: :meth:`stop` closes them. ``on_sent`` sees
    every :class:`Output` after the sink took it; ``fallback`` (run on the
    engine thread when the failsafe asks) switches the engine to the next
    backend down and returns its name, or None when there is none.
    """

    def __init__(self, engine: Engine, source: Source, sink: Sink, state: ParamState,
                 options: LoopOptions | None = None, stats: Stats | None = None,
                 on_sent: Callable[[Output], None] | None = None, timer: StepTimer | None = None,
                 failsafe: Failsafe | None = None, fallback: Callable[[], str | None] | None = None,
                 before_step: Callable[[], None] | None = None, controlnet_feed: ControlNetFeed | None = None) -> None:
        self.engine = engine
        self.controlnet_feed = controlnet_feed  # ControlNet images from second sources, paired with input frames
        # Called on the engine thread before each step's snapshot: the rig moves morphs and held changes here.
        self.before_step = before_step
        self.source = source
        self.sink = sink
        self.state = state
        self.options = options or LoopOptions()
        self.failsafe = failsafe or Failsafe()
        # A caller's own Stats carries its own health source (run.py passes the same failsafe's status).
        self.stats = stats or Stats(health=self.failsafe.status)
        self.fallback = fallback
        self.finished = threading.Event()  # set when max_frames were sent, or the loop stopped
        self._stop = threading.Event()
        self._engine_done = threading.Event()
        self._in: LatestSlot[Frame] = LatestSlot()
        self._out: LatestSlot[Output | PendingOutputs] = LatestSlot()
        self._device = torch.device(engine.device)
        self._timer = timer or StepTimer(self._device)
        self._sender = Sender(sink, self._out, self.stats, self.failsafe, PinnedRing(self._device),
                              max_frames=self.options.max_frames, hold_repeat=self.options.hold_repeat,
                              read_timeout=self.options.read_timeout, on_sent=on_sent)
        self._threads = [
            threading.Thread(target=self._receive, name="dreamwire-receive", daemon=True),
            threading.Thread(target=self._engine_loop, name="dreamwire-engine", daemon=True),
            threading.Thread(target=self._send, name="dreamwire-send", daemon=True),
        ]
        self._watchdog = Ticker(self.options.watchdog_period, lambda: self.failsafe.stalled(self._busy_since),
                                "dreamwire-watchdog")
        self._busy_since: float | None = None
        self._stopped = False
        self._closed: set[str] = set()
        self._close_lock = threading.Lock()
        # engine-thread state
        self._report = Throttle(log, level=logging.ERROR)
        self._upload = PinnedRing(self._device)
        self._version: int | None = None
        self._batch: list[Frame] = []  # inputs gathered for the next call (frame_buffer_size > 1)
        self._seq = 0
        self._held = True  # the in-flight frames are not from the current input (start, bypass, pause)
        self._input_key: tuple[Any, ...] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FrameLoop:
        for t in self._threads:
            t.start()
        self._watchdog.start()
        return self

    def stop(self, timeout: float = 8.0) -> None:
        """Stop the threads (the send thread flushes the last finished frame), then close the bridges."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._watchdog.stop()
        deadline = time.perf_counter() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.1, deadline - time.perf_counter()))
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
                    self.stats.error()
                    report.log("source read failed (loop continues): %s", exc, exc_info=exc)
                    self._stop.wait(timeout)
                    continue
                if frame is None:
                    continue
                self.stats.received(frame.frame_id)
                if self._in.put(frame):
                    self.stats.drop("in")
        finally:
            self._close("source")

    # --- engine --------------------------------------------------------------------------------

    def _engine_loop(self) -> None:
        try:
            with thread_stream(self._device):
                while not self._stop.is_set():
                    frame = self._in.get(self.options.read_timeout)
                    if frame is not None:
                        self._engine_frame(frame)
        finally:
            self._engine_done.set()

    def _engine_frame(self, frame: Frame) -> None:
        if self.before_step is not None:
            try:
                self.before_step()  # this step's morph values and due quantized changes, before the snapshot
            except Exception as exc:  # the rig never raises by design; if it did, frames must still flow
                self._report.log("before-step hook failed (the output goes on): %s", exc, exc_info=exc)
        v, params = self.state.snapshot()
        try:
            if v != self._version:
                self._version = v  # set first: a failing update must not be retried every frame
                self.engine.update(params)
            self._keep_current(frame, params)
        except Exception as exc:  # a bad update or reset must not end a live show
            self._engine_failed("engine update", exc)
        if params.pause:
            self.stats.pause()
            return
        if params.bypass:
            self._batch.clear()
            self.stats.bypass()
            self._emit(Output(replace(frame, frame_id=self._seq, source_id=frame.frame_id), params, bypass=True))
            return
        if not self.failsafe.may_step():  # backing off after a failure: the frame goes out as a stand-in
            self._emit(substitute(frame, self._seq, params, self.failsafe.settings.on_error))
            return
        self._batch.append(frame)
        if self.controlnet_feed:  # the pairing rule: the latest control frame when the input frame is taken
            self.controlnet_feed.mark(frame)
        if len(self._batch) < self.engine.config.frames:
            return
        inputs, self._batch = self._batch, []
        try:
            out = self._process(inputs, params)
        except Exception as exc:  # one bad frame or engine hiccup must not end a live show
            self._engine_failed("engine step", exc)
            for f in inputs:
                self._emit(substitute(f, self._seq, params, self.failsafe.settings.on_error))
            return
        self.failsafe.succeeded()
        self._emit(out, len(inputs))

    def _keep_current(self, frame: Frame, params: Params) -> None:
        """Restart the in-flight buffer when the input jumps, and apply the failsafe's requests."""
        key = (frame.sender, frame.size, frame.layout)
        held = params.pause or params.bypass
        if (self._held and not held) or (key != self._input_key and self._input_key is not None):
            self.engine.reset()
            self._batch.clear()
        self._held, self._input_key = held, key
        if self.failsafe.take_switch():
            self.failsafe.switched(self.fallback() if self.fallback is not None else None)
        if self.failsafe.take_reset():
            self.engine.reset()

    def _engine_failed(self, what: str, exc: BaseException) -> None:
        self.stats.error()
        self._report.log("%s failed (the output goes on): %s", what, exc, exc_info=exc)
        self.failsafe.failed(f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def _emit(self, out: Output | PendingOutputs, count: int = 1) -> None:
        self._seq += count
        if self._out.put(out):
            self.stats.drop("out")

    def _process(self, frames: list[Frame], params: Params) -> PendingOutputs:
        eng = self.engine
        size = (eng.config.height, eng.config.width)
        if eng.config.mode == "txt2img":
            x = None  # the source only paces the stream and sets the output size
        else:
            x = torch.cat([to_model_input(self._upload.upload(f.pixels), f.layout, size, eng.device, eng.dtype)
                           for f in frames])
        self._busy_since = time.perf_counter()
        try:
            with self._timer.step():
                feed = self.controlnet_feed
                extra = {"controlnet_images": feed.images(frames, size, eng.device, eng.dtype)} if feed else {}
                result = eng.step(x, sources=frames, **extra)
        finally:
            self._busy_since = None
        self.stats.step(self._timer.last, result.skipped, result.delay)
        outs = [Output(Frame(None, f.layout, self._seq + i, src.capture_time, src.timecode, source_id=src.frame_id,
                             frame_rate=src.frame_rate, sender=src.sender),
                       params, skipped=result.skipped, delay=result.delay)
                for i, (f, src) in enumerate(zip(frames, result.sources))]
        sizes = [f.size if self.options.output_size == "input" else None for f in frames]
        finite = torch.isfinite(result.images).all()  # one fused reduction, read by the send thread
        return PendingOutputs(result.images, sizes, outs, list(result.sources), finite, mark_done(self._device))

    # --- send ----------------------------------------------------------------------------------

    def _send(self) -> None:
        try:
            with thread_stream(self._device):
                self._sender.run(self._engine_done, self._stop, self.finished)
        finally:
            self._close("sink")
