"""CUDA graph capture and replay with static, preallocated input/output buffers.

A live-visuals frame at batch 1-4 is dominated by kernel-launch overhead on
fast GPUs; replaying a captured graph removes it. One graph is captured per
input-shape signature (batch and resolution), on first use or when a warm-up
asks for it; after that a call is: copy inputs into the static buffers,
replay, copy the output out. No cudaMalloc and no synchronize per frame.

Every graph of one backend is captured through one :class:`GraphPool`:

- ``capture_error_mode="thread_local"``: under the default ``"global"`` mode a
  CUDA call from *another* thread (the send thread's copies) during a capture
  invalidates it (torch/cuda/graphs.py, ``torch.cuda.graph`` docstring;
  ``cudaStreamCaptureModeThreadLocal`` in the CUDA runtime API docs).
- one memory pool (``torch.cuda.graph_pool_handle()``) instead of a private
  pool per graph, so step counts 1..8 at one resolution cost one pool, not eight.
  Graphs sharing a pool may reuse each other's *intermediate* memory, which is
  safe only when they never run at the same time (PyTorch docs, "CUDA Graphs:
  graph memory management"). :meth:`GraphPool.exclusive` guarantees that: a host
  lock plus an event each replay waits on and records, so replays are ordered
  even across streams. Static inputs are allocated before capture and outputs
  stay referenced by their graph, so neither is ever handed to another graph.
- a capture counter: ``captures`` on a backend is what the warm-up policy and the
  GPU validation read to prove that nothing is captured after ready.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

Signature = tuple[tuple[tuple[int, ...], torch.dtype], ...]
T = TypeVar("T")


def signature(args: tuple[torch.Tensor, ...]) -> Signature:
    return tuple((tuple(a.shape), a.dtype) for a in args)


def copy_inputs(static: tuple[torch.Tensor, ...], args: tuple[torch.Tensor, ...]) -> None:
    """Refresh a graph's static input buffers (async on the current stream; dtype converted if needed)."""
    for buf, a in zip(static, args):
        buf.copy_(a, non_blocking=True)


class GraphPool:
    """The memory pool, capture count and replay ordering shared by every graph of one backend."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.captures = 0
        self._handle = None
        self._lock = threading.RLock()
        self._done: torch.cuda.Event | None = None

    def capture(self, fn: Callable[[], T]) -> tuple[torch.cuda.CUDAGraph, T]:
        """Capture ``fn()`` into a new graph in the shared pool; returns the graph and ``fn``'s result."""
        if self._handle is None:
            self._handle = torch.cuda.graph_pool_handle()  # torch/cuda/graphs.py: graph_pool_handle
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._handle, capture_error_mode="thread_local"):
            out = fn()
        self.captures += 1
        return graph, out

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run the block's GPU work after every earlier user of the pool's memory, on any stream.

        The lock orders the host side (enqueue order); the event orders the device
        side, since work enqueued on two streams would otherwise overlap.
        """
        with self._lock:
            if self._done is not None:
                torch.cuda.current_stream(self.device).wait_event(self._done)
            yield
            if self._done is None:
                self._done = torch.cuda.Event()
            self._done.record(torch.cuda.current_stream(self.device))


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor | tuple[torch.Tensor, ...]


class CudaGraphRunner:
    """Wraps ``fn(*tensors) -> tensor`` (an eager or torch.compile'd module) in per-shape CUDA graphs.

    ``copy_output``: the engine keeps references to results across calls (the
    last decoded frame, in-flight latents), so by default each call returns a
    copy of the static output; the copy comes from torch's caching allocator,
    not a fresh cudaMalloc.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], pool: GraphPool, *, warmup: int = 2,
                 copy_output: bool = True) -> None:
        self.fn = fn
        self.pool = pool
        self.warmup = warmup
        self.copy_output = copy_output
        self._graphs: dict[Signature, _Captured] = {}

    def captured(self, *args: torch.Tensor) -> bool:
        return signature(args) in self._graphs

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        sig = signature(args)
        with self.pool.exclusive():
            entry = self._graphs.get(sig)
            if entry is None:
                entry = self._graphs[sig] = self._capture(args)
            copy_inputs(entry.inputs, args)
            entry.graph.replay()
            if not self.copy_output:
                return entry.output
            if isinstance(entry.output, tuple):  # a ControlNet's residuals
                return tuple(o.clone() for o in entry.output)
            return entry.output.clone()

    def _capture(self, args: tuple[torch.Tensor, ...]) -> _Captured:
        static = tuple(a.detach().clone().contiguous() for a in args)
        current = torch.cuda.current_stream(self.pool.device)
        side = torch.cuda.Stream(device=self.pool.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):  # warm-up off the capture: compiles, autotuning, lazy init, allocator growth
            for _ in range(self.warmup):
                self.fn(*static)
        current.wait_stream(side)
        graph, out = self.pool.capture(lambda: self.fn(*static))
        return _Captured(graph, static, out)
