"""A stand-in for the parts of ``torch.cuda`` that the CUDA-graph and TensorRT runners call, for CPU tests.

Streams are numbered handles (0 is the legacy default stream). Work that would
run on the GPU is a *kernel*: a callable handed to :meth:`FakeCuda.launch`,
which runs it at once, or, while a graph is being captured, records it into
that graph instead (a capture only records on a real GPU too); ``replay`` runs
the recorded kernels again, on whatever the captured buffers hold by then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.cuda_stream = handle
        self.waits: list[tuple[str, object]] = []

    def wait_stream(self, other: FakeStream) -> None:
        self.waits.append(("stream", other.cuda_stream))

    def wait_event(self, event: FakeEvent) -> None:
        self.waits.append(("event", event))


class FakeEvent:
    def __init__(self) -> None:
        self.recorded_on: list[int] = []

    def record(self, stream: FakeStream | None = None) -> None:
        self.recorded_on.append(stream.cuda_stream if stream is not None else -1)


class FakeGraph:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.kernels: list[Callable[[], None]] = []
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for kernel in self.kernels:
            kernel()


class FakeCuda:
    """Install with :meth:`install`; ``captures`` lists (pool, capture_error_mode, stream handle) per capture."""

    CAPTURE_STREAM = 99

    def __init__(self, current: int = 0) -> None:
        self.default = FakeStream(0)
        self.current = self.default if current == 0 else FakeStream(current)
        self.streams: list[FakeStream] = []
        self.capturing: FakeGraph | None = None
        self.captures: list[tuple[object, str, int]] = []
        self.pools: list[object] = []
        self.free = 8 << 30
        self.device_index = 0  # the current device, as torch.cuda.device sets it

    def launch(self, kernel: Callable[[], None]) -> None:
        if self.capturing is not None:
            self.capturing.kernels.append(kernel)
        else:
            kernel()

    def _new_stream(self, device=None) -> FakeStream:
        stream = FakeStream(100 + len(self.streams))
        self.streams.append(stream)
        return stream

    @contextlib.contextmanager
    def _stream(self, stream: FakeStream):
        before, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = before

    @contextlib.contextmanager
    def _graph(self, graph: FakeGraph, pool=None, stream=None, capture_error_mode: str = "global", **_):
        capture = FakeStream(self.CAPTURE_STREAM)
        self.captures.append((pool, capture_error_mode, capture.cuda_stream))
        with self._stream(capture):
            self.capturing = graph
            try:
                yield
            finally:
                self.capturing = None

    @contextlib.contextmanager
    def _device(self, device):
        """``torch.cuda.device``: the current device inside the block (``cuda`` alone is device 0)."""
        before = self.device_index
        self.device_index = torch.device(device).index or 0
        try:
            yield
        finally:
            self.device_index = before

    def _pool_handle(self) -> object:
        handle = object()
        self.pools.append(handle)
        return handle

    def install(self, monkeypatch) -> FakeCuda:
        c = torch.cuda
        monkeypatch.setattr(c, "current_stream", lambda device=None: self.current)
        monkeypatch.setattr(c, "default_stream", lambda device=None: self.default)
        monkeypatch.setattr(c, "Stream", self._new_stream)
        monkeypatch.setattr(c, "stream", self._stream)
        monkeypatch.setattr(c, "Event", FakeEvent)
        monkeypatch.setattr(c, "CUDAGraph", lambda: FakeGraph(self))
        monkeypatch.setattr(c, "graph", self._graph)
        monkeypatch.setattr(c, "graph_pool_handle", self._pool_handle)
        monkeypatch.setattr(c, "device", self._device)
        monkeypatch.setattr(c, "mem_get_info", lambda device=None: (self.free, 2 * self.free))
        monkeypatch.setattr(c, "empty_cache", lambda: None)
        return self
