"""Engine-step timing without a per-frame device synchronize."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import torch


class StepTimer:
    """Seconds per engine step, read without stalling the GPU.

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
