"""The live frame loop: receive -> engine -> send, three threads that never wait on each other.

Frames move through :class:`LatestSlot` objects that hold one item: a newer
frame replaces an unread one and the replacement is counted as a drop. So a
slow source starves nobody, a slow sink costs dropped frames instead of
engine steps, and the engine thread only ever waits for its input slot,
never on a socket or a file.

Pixels change format in :mod:`runtime.imageops` only, on the engine's
device: input conversion and resizing on the engine thread right before the
step, output conversion (and resizing back to the input's size) on the send
thread, so the engine can start its next step while the last output is
turned into pixels and shipped.

Control changes reach the engine as whole :class:`~runtime.control.Params`
snapshots, checked between steps: everything one OSC bundle changed lands on
the same step, and a change that arrives mid-step applies before the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from bridges.base import Frame, Sink, Source
from runtime.control import ControlState, Params
from runtime.imageops import to_model_input, to_uint8
from runtime.telemetry import Stats

log = logging.getLogger(__name__)

T = TypeVar("T")
OUTPUT_SIZES = ("input", "engine")


class LatestSlot(Generic[T]):
    """A one-item mailbox: :meth:`put` replaces an unread item (and says so), :meth:`get` takes it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced one nobody read (a drop)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float) -> T | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None, timeout)


def _as_tensor(pixels: Any) -> torch.Tensor:
    return pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(pixels))


class _StepTimer:
    """Engine-step time without a per-frame device sync.

    On CUDA a ``synchronize()`` per step would stop the CPU from queueing the
    next step while the GPU finishes this one (the original StreamDiffusion
    syncs every frame). Instead each step is bracketed by CUDA events and read
    once the GPU has passed them, typically one step later.
    """

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._pending: deque[tuple[Any, Any]] = deque()
        self._t0 = 0.0
        self.last = 0.0

    def begin(self) -> None:
        if self._cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._pending.append((start, None))
        else:
            self._t0 = time.perf_counter()

    def end(self) -> float:
        """Seconds of the most recent step the device has finished."""
        if not self._cuda:
            self.last = time.perf_counter() - self._t0
            return self.last
        stop = torch.cuda.Event(enable_timing=True)
        stop.record()
        self._pending[-1] = (self._pending[-1][0], stop)
        while self._pending and self._pending[0][1].query():
            start, done = self._pending.popleft()
            self.last = start.elapsed_time(done) / 1000.0
        while len(self._pending) > 8:  # the GPU is far behind: drop the oldest rather than grow
            self._pending.popleft()
        return self.last


class _Throttled:
    """Logs the first few errors of a kind in full, then one summary line per 10 s."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self._last = 0.0

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count <= 3:
            log.error("%s failed (frame skipped, loop continues): %s", self.what, exc, exc_info=exc)
        elif now - self._last > 10.0:
            self._last = now
            log.error("%s failed %d times so far; latest: %s", self.what, self.count, exc)


@dataclass(frozen=True)
class _Pending:
    """Engine outputs not yet turned into pixels: the send thread converts them, off the engine's critical path."""

    images: torch.Tensor  # (f, 3, H, W) in [-1, 1] on the engine's device
    sizes: list[tuple[int, int] | None]
    frames: list[Frame]  # each output's identity; pixels are filled in by the send thread

    def finish(self) -> list[Frame]:
        out = []
        for i, (f, size) in enumerate(zip(self.frames, self.sizes)):
            pixels = to_uint8(self.images[i:i + 1], f.layout, size)[0]
            out.append(Frame(pixels, f.layout, f.frame_id, f.capture_time, f.timecode, f.source_id, f.meta))
        return out


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

    ``engine`` is a :class:`~runtime.stream.StreamEngine` or anything with the
    same ``update``/``step``/``config``/``device``/``dtype``/``delay``. The loop
    takes ownership of the bridges: :meth:`stop` closes them.
    """

    def __init__(self, engine: Any, source: Source, sink: Sink, control: ControlState,
                 options: LoopOptions | None = None, stats: Stats | None = None,
                 on_sent: Callable[[Frame], None] | None = None) -> None:
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
        self._out: LatestSlot[Frame | _Pending] = LatestSlot()
        self._threads = [
            threading.Thread(target=self._receive, name="dreamwire-receive", daemon=True),
            threading.Thread(target=self._engine_loop, name="dreamwire-engine", daemon=True),
            threading.Thread(target=self._send, name="dreamwire-send", daemon=True),
        ]
        self._stopped = False
        self._closed: set[str] = set()
        self._close_lock = threading.Lock()
        self._timer = _StepTimer(torch.device(getattr(engine, "device", "cpu")))

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

    # --- receive -------------------------------------------------------------------------------

    def _receive(self) -> None:
        report = _Throttled("source read")
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
                    report(exc)
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
        report = _Throttled("engine step")
        version: int | None = None
        params: Params = self.control.params
        per_call = int(getattr(getattr(self.engine, "config", None), "frames", 1))
        history: deque[list[Frame]] = deque(maxlen=16)  # inputs of each engine call, newest last
        last_src: list[Frame] | None = None
        batch: list[Frame] = []  # inputs gathered for the next call (frame_buffer_size > 1)
        seq = 0
        try:
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
                        out: Frame | _Pending = Frame(
                            frame.pixels, frame.layout, seq, frame.capture_time, frame.timecode,
                            source_id=frame.frame_id, meta={**frame.meta, "bypass": True, "params": params})
                        count = 1
                    else:
                        batch.append(frame)
                        if len(batch) < per_call:
                            continue
                        inputs, batch = batch, []
                        out, last_src = self._process(inputs, params, history, last_src, seq)
                        count = len(inputs)
                except Exception as exc:  # one bad frame or engine hiccup must not end a live show
                    batch.clear()
                    self.stats.error()
                    report(exc)
                    continue
                seq += count
                if self._out.put(out):
                    self.stats.drop("out")
        finally:
            self._engine_done.set()

    def _process(self, frames: list[Frame], params: Params, history: deque[list[Frame]],
                 last_src: list[Frame] | None, seq: int) -> tuple[_Pending, list[Frame]]:
        eng = self.engine
        size = (eng.config.height, eng.config.width)
        if getattr(eng.config, "mode", "img2img") == "txt2img":
            x = None  # the source only paces the stream and sets the output size
        else:
            x = torch.cat([to_model_input(_as_tensor(f.pixels), f.layout, size, eng.device, eng.dtype)
                           for f in frames])
        self._timer.begin()
        result = eng.step(x)
        self.stats.step(self._timer.end(), result.skipped, result.delay)
        if result.skipped and last_src is not None:
            srcs = last_src  # the engine repeated its last output: it still comes from those inputs
        else:
            history.append(frames)
            # Stream batch: this output is the input from `delay` calls ago (or the first one, when primed).
            srcs = history[max(0, len(history) - 1 - result.delay)]
        outs = [Frame(None, f.layout, seq + i, src.capture_time, src.timecode, source_id=src.frame_id,
                      meta={**src.meta, "skipped": result.skipped, "params": params, "delay": result.delay})
                for i, (f, src) in enumerate(zip(frames, srcs))]
        sizes = [f.size if self.options.output_size == "input" else None for f in frames]
        return _Pending(result.images, sizes, outs), srcs

    # --- send ----------------------------------------------------------------------------------

    def _send(self) -> None:
        report = _Throttled("sink write")
        sent = 0
        hold = self.options.hold_repeat if getattr(self.sink, "live", False) else None
        last: Frame | None = None
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
                try:
                    outs = item.finish() if isinstance(item, _Pending) else [item]
                except Exception as exc:  # a conversion hiccup drops this output only
                    self.stats.error()
                    report(exc)
                    continue
                for out in outs:
                    try:
                        self.sink.write(out)
                    except Exception as exc:  # a sink hiccup drops this frame only
                        self.stats.error()
                        report(exc)
                        continue
                    self.stats.sent(time.monotonic() - out.capture_time)
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


    def _repeat(self, frame: Frame, report: _Throttled) -> None:
        """Send the last output again (marked ``held``): the source is silent, the show goes on."""
        try:
            self.sink.write(Frame(frame.pixels, frame.layout, frame.frame_id, frame.capture_time, frame.timecode,
                                  frame.source_id, {**frame.meta, "held": True}))
            self.stats.hold()
        except Exception as exc:
            self.stats.error()
            report(exc)


def measure_overhead(model: str = "tiny", *, frames: int = 200, warmup: int = 10, width: int = 256,
                     height: int = 256, device: str | None = None, backend: str = "auto",
                     engine: Any = None) -> dict[str, float]:
    """Pipeline overhead of the live loop: (wall time per output frame - engine time per step) / engine time.

    Runs the engine between an on-demand ``pattern`` source and a ``null``
    sink, so the only costs beyond the engine step are the loop's own:
    pixel conversion, slot hand-offs, thread switches and the host copy.
    Not a test: a figure for ``docs/benchmarks.md`` (``dreamwire run --report``
    prints the same numbers for any run).
    """
    from bridges.null import NullSink
    from bridges.pattern import PatternSource
    from runtime.stream import EngineConfig

    if engine is None:
        from runtime.assemble import build_engine

        engine = build_engine(model, backend=backend, device=device,
                              config=EngineConfig(width=width, height=height))
    source = PatternSource(f"{width}x{height}@0")
    sink = NullSink()
    source.open()
    sink.open()
    marks: dict[str, float] = {}
    stats = Stats()

    def on_sent(_: Frame) -> None:
        if stats.frames_out == warmup:
            marks.update(t0=time.perf_counter(), e0=stats.engine_s_total, s0=stats.steps - stats.skipped)

    loop = FrameLoop(engine, source, sink, ControlState(), LoopOptions(max_frames=warmup + frames),
                     stats=stats, on_sent=on_sent)
    loop.start()
    loop.wait()
    t1 = time.perf_counter()
    loop.stop()
    steps = (stats.steps - stats.skipped) - marks["s0"]
    wall = (t1 - marks["t0"]) / frames
    eng = (stats.engine_s_total - marks["e0"]) / max(1, steps)
    return {
        "frames": float(frames),
        "wall_ms_per_frame": 1000.0 * wall,
        "engine_ms_per_step": 1000.0 * eng,
        "overhead": (wall - eng) / eng,
        "fps": 1.0 / wall,
        "dropped": float(stats.dropped_in + stats.dropped_out),
    }
