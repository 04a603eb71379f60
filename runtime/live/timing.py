"""Engine-step timing without a per-frame device synchronize, robust to steps that fail."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

EventFactory = Callable[[], Any]


def cuda_event() -> Any:
    return torch.cuda.Event(enable_timing=True)


class StepTimer:
    """Seconds per engine step, read without stalling the GPU.

    On CUDA a ``synchronize()`` per step would stop the CPU from queueing the
    next step while the GPU finishes this one (the original StreamDiffusion
    syncs every frame). Instead each step is bracketed by CUDA events recorded
    on the stream doing the work, and read once the GPU has passed them,
    typically one step later (``Event.query``/``elapsed_time``:
    pytorch torch/cuda/streams.py, class Event).

    A step that raises records no stop event and leaves nothing pending, so
    one failed step never poisons the timing of the steps after it.
    """

    def __init__(self, device: torch.device, event_factory: EventFactory | None = None,
                 max_pending: int = 8) -> None:
        self._cuda = device.type == "cuda" or event_factory is not None
        self._event = event_factory or cuda_event
        self._pending: deque[tuple[Any, Any]] = deque()
        self._max_pending = max_pending
        self.last = 0.0

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time the body; on an exception nothing is recorded and the exception propagates."""
        if not self._cuda:
            t0 = time.perf_counter()
            yield
            self.last = time.perf_counter() - t0
            return
        start = self._event()
        start.record()  # on the current stream: the one the step's kernels are queued on
        yield
        stop = self._event()
        stop.record()
        self._pending.append((start, stop))
        self._collect()

    def _collect(self) -> None:
        while self._pending and self._pending[0][1].query():
            start, stop = self._pending.popleft()
            self.last = start.elapsed_time(stop) / 1000.0
        while len(self._pending) > self._max_pending:  # the GPU is far behind: drop the oldest rather than grow
            self._pending.popleft()
