"""Second sources for ControlNet control images (``--control-source``), paired with the input frames.

The common TouchDesigner workflow renders a depth or pose map and sends it on its own NDI/Spout
stream. Each ControlNet takes its control image either from the input frame (``input``, the default)
or from such a source; that source's frames then go through the ControlNet's ``--control-image``
preprocessor (``passthrough`` for a ready depth map, ``canny`` to trace edges of it).

**Pairing rule: the latest control frame at the moment the input frame is taken.** A live source
(NDI, Spout, paced pattern/files) is read by its own thread into a one-frame holder; when the engine
thread takes an input frame for the next call, it takes whatever control frame is newest then. An
on-demand source (``pattern:...@0``, ``images:DIR`` or ``video:PATH`` at ``@0``) makes a frame when
asked, so one is read exactly when each input frame is taken: input frame k pairs with control frame
k. Until a source has sent its first frame the control image is black, and a warning says so once.
After pairing, each frame keeps its control image for all its steps in flight
(:mod:`dreamwire.engine.controlnet_slots`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from dreamwire.bridges.base import Frame, Source
from dreamwire.engine.controlnet import ControlNetSetup
from dreamwire.engine.preprocess import make_preprocessor
from dreamwire.live.imageops import to_model_input
from dreamwire.logs import Throttle

log = logging.getLogger(__name__)
INPUT = "input"  # a ControlNet's control image comes from the input frame
_PENDING = 64  # paired control frames kept for frames not yet processed (bypass/reset drop frames unseen)


def controlnet_routes(sources: Sequence[str], count: int) -> tuple[str, ...]:
    """Each ControlNet's control source: one given for all, or one per ControlNet; ValueError otherwise."""
    names = tuple(sources) or (INPUT,)
    if not count:
        if any(n != INPUT for n in names):
            raise ValueError("--control-source needs at least one --controlnet")
        return ()
    if len(names) == 1:
        names = names * count
    if len(names) != count:
        raise ValueError(f"--control-source: {len(names)} given for {count} ControlNets; give one for all "
                         f"or one per ControlNet ({INPUT} for the input frame)")
    return names


class _Feed:
    """One opened control source and its newest frame."""

    def __init__(self, uri: str, source: Source, read_timeout: float) -> None:
        self.uri, self.source, self.timeout = uri, source, read_timeout
        self.on_demand = bool(getattr(source, "on_demand", False))
        self.latest: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report = Throttle(log, level=logging.ERROR)
        self.warned = False

    def start(self) -> None:
        if not self.on_demand:
            self._thread = threading.Thread(target=self._run, name=f"dreamwire-control-{self.uri}", daemon=True)
            self._thread.start()

    def _read(self) -> Frame | None:
        try:
            return self.source.read(self.timeout)
        except Exception as exc:  # a failing control source must not stop the show: the last frame stays
            self._report.log("control source %s read failed (the last control frame stays): %s", self.uri, exc,
                             exc_info=exc)
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._read()
            if frame is not None:
                with self._lock:
                    self.latest = frame
            elif not self._stop.is_set():
                self._stop.wait(0.005)

    def take(self) -> Frame | None:
        """The control frame for an input frame taken now (see the module's pairing rule)."""
        if self.on_demand:
            frame = self._read()
            if frame is not None:
                self.latest = frame
            return self.latest
        with self._lock:
            return self.latest

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.source.close()


class ControlNetFeed:
    """The opened control sources of a run, and the control frames paired with the input frames."""

    def __init__(self, routes: Sequence[str], sources: dict[str, Source], setups: Sequence[ControlNetSetup],
                 read_timeout: float = 0.1) -> None:
        self.routes = tuple(routes)
        self.feeds = {uri: _Feed(uri, src, read_timeout) for uri, src in sources.items()}
        self._prep = [make_preprocessor(s.preprocessor) for s in setups]
        self._paired: OrderedDict[int, tuple[Frame, dict[str, Frame | None]]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.feeds)

    def start(self) -> ControlNetFeed:
        for feed in self.feeds.values():
            feed.start()
        return self

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()

    def mark(self, frame: Frame) -> None:
        """Pair ``frame`` (an input frame the engine thread just took) with each source's control frame."""
        self._paired[id(frame)] = (frame, {uri: feed.take() for uri, feed in self.feeds.items()})
        while len(self._paired) > _PENDING:
            self._paired.popitem(last=False)

    def images(self, frames: Sequence[Frame], size: tuple[int, int], device: torch.device, dtype: torch.dtype
               ) -> list[torch.Tensor | None]:
        """Per ControlNet: (f,3,H,W) control images in [0, 1] for ``frames``, or None to use the input frame."""
        paired = [self._paired.pop(id(f), (f, {}))[1] for f in frames]
        inputs: dict[str, torch.Tensor] = {}
        for uri in {r for r in self.routes if r != INPUT}:
            inputs[uri] = torch.cat([self._model_input(uri, p.get(uri), size, device, dtype) for p in paired])
        return [None if r == INPUT else prep(inputs[r]) for r, prep in zip(self.routes, self._prep)]

    def _model_input(self, uri: str, frame: Frame | None, size: tuple[int, int], device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
        if frame is None:
            feed = self.feeds[uri]
            if not feed.warned:
                feed.warned = True
                log.warning("control source %s has sent no frame yet: its control images are black until it does",
                            uri)
            return torch.full((1, 3, *size), -1.0, device=device, dtype=dtype)
        pixels: Any = torch.from_numpy(frame.pixels) if not hasattr(frame.pixels, "dim") else frame.pixels
        return to_model_input(pixels, frame.layout, size, device, dtype)
