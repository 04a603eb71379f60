"""Host <-> device frame copies for the loop: dedicated CUDA streams and pinned buffers allocated once.

Why: on the legacy default stream every copy and kernel serialises with every
other thread's work (and TensorRT's ``execute_async_v3`` adds device-wide
synchronizes there), and a copy from pageable memory is synchronous whatever
``non_blocking`` says. So the engine thread and the send thread each get
their own stream, frames go through page-locked buffers that are allocated
once per shape and reused, and the send stream waits on an event the engine
stream recorded after the step instead of a device-wide synchronize.
Sources: PyTorch "CUDA semantics" notes (streams, pinned memory,
``Tensor.record_stream``), torch/cuda/streams.py (``Stream.wait_event``,
``Event.record``/``synchronize``).

On a CPU device every function here is a plain tensor conversion.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch


def new_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A dedicated (non-default) stream on ``device``, or None off CUDA."""
    return torch.cuda.Stream(device=device) if device.type == "cuda" else None


def on_stream(stream: torch.cuda.Stream | None) -> Any:
    """Make ``stream`` current for this thread (CUDA's current stream is per thread)."""
    return torch.cuda.stream(stream) if stream is not None else nullcontext()


def mark_done(device: torch.device) -> Any:
    """An event recorded on the current stream: what a consumer on another stream must wait for."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


def wait_for(event: Any, *tensors: torch.Tensor) -> None:
    """Queue a wait for ``event`` on the current stream, and keep ``tensors`` alive for this stream's use."""
    if event is None:
        return
    stream = torch.cuda.current_stream()
    stream.wait_event(event)
    for t in tensors:
        t.record_stream(stream)  # the allocator must not recycle them for the producer's stream meanwhile


class PinnedRing:
    """Page-locked host buffers per shape, ``depth`` deep, reused round-robin.

    A buffer is reused only after the copy that last used it finished (its
    event), so an upload never overwrites pixels still being copied and a
    download hands the sink pixels that stay valid until ``depth - 1`` more
    frames of that shape went through.
    """

    def __init__(self, device: torch.device, depth: int = 2) -> None:
        self.device = device
        self.depth = depth
        self._cuda = device.type == "cuda"
        self._buffers: dict[tuple[int, ...], list[tuple[torch.Tensor, Any]]] = {}
        self._next: dict[tuple[int, ...], int] = {}

    def _slot(self, shape: tuple[int, ...]) -> tuple[int, torch.Tensor, Any]:
        ring = self._buffers.get(shape)
        if ring is None:
            ring = self._buffers[shape] = [(torch.empty(shape, dtype=torch.uint8, pin_memory=True), None)
                                           for _ in range(self.depth)]
            self._next[shape] = 0
        i = self._next[shape]
        self._next[shape] = (i + 1) % self.depth
        buf, event = ring[i]
        if event is not None:
            event.synchronize()  # only this buffer's last copy, never the whole device
        return i, buf, event

    def _done(self, shape: tuple[int, ...], i: int) -> None:
        event = torch.cuda.Event()
        event.record()
        self._buffers[shape][i] = (self._buffers[shape][i][0], event)

    def upload(self, pixels: Any) -> torch.Tensor:
        """(H, W, C) uint8 host pixels -> a uint8 tensor on the device (queued on the current stream)."""
        if isinstance(pixels, torch.Tensor):
            return pixels.to(self.device, non_blocking=True)
        array = np.ascontiguousarray(pixels)
        if not self._cuda:
            return torch.from_numpy(array)
        i, buf, _ = self._slot(tuple(array.shape))
        buf.numpy()[...] = array
        out = buf.to(self.device, non_blocking=True)
        self._done(tuple(array.shape), i)
        return out

    def download(self, t: torch.Tensor) -> np.ndarray:
        """A uint8 device tensor -> host pixels, waiting only for this copy."""
        if not self._cuda or t.device.type != "cuda":
            return t.cpu().numpy()
        i, buf, _ = self._slot(tuple(t.shape))
        buf.copy_(t, non_blocking=True)
        self._done(tuple(t.shape), i)
        self._buffers[tuple(t.shape)][i][1].synchronize()
        return buf.numpy()


@contextmanager
def thread_stream(device: torch.device) -> Iterator[torch.cuda.Stream | None]:
    """A dedicated stream made current for the calling thread for the duration of the block."""
    stream = new_stream(device)
    with on_stream(stream):
        yield stream
