"""CUDA-graph capture/replay (runtime/backends/cudagraph.py) against a stand-in torch.cuda (tests/fakes/cuda.py).

Thread-local capture mode, one pool for every graph of a backend, a graph per input signature,
static inputs refreshed before each replay, outputs returned as copies, and every capture counted.
"""

from __future__ import annotations

import torch

from dreamwire.backends.cudagraph import CudaGraphRunner, GraphPool
from tests.fakes.cuda import FakeCuda


def _doubler(cuda: FakeCuda, calls: list[int]):
    """A "network" whose GPU work is one fake kernel: out = 2x (allocated per call, as a module's output is)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(cuda.current.cuda_stream)
        out = torch.empty_like(x)
        cuda.launch(lambda: out.copy_(x * 2))
        return out

    return fn


def test_runner_captures_once_per_shape_in_one_pool_thread_local(monkeypatch):
    cuda = FakeCuda(current=7).install(monkeypatch)
    pool = GraphPool(torch.device("cpu"))
    calls: list[int] = []
    runner = CudaGraphRunner(_doubler(cuda, calls), pool, warmup=2)
    other = CudaGraphRunner(_doubler(cuda, calls), pool, warmup=1)  # e.g. the decoder next to the UNet
    a = torch.randn(2, 3)
    out = runner(a)
    torch.testing.assert_close(out, 2 * a)
    torch.testing.assert_close(runner(a + 1), 2 * (a + 1))  # replay on the refreshed static input
    torch.testing.assert_close(runner(torch.ones(4, 3)), torch.full((4, 3), 2.0))  # new shape: new graph
    torch.testing.assert_close(other(a), 2 * a)
    assert pool.captures == 3 and len(cuda.pools) == 1
    assert cuda.captures == [(cuda.pools[0], "thread_local", FakeCuda.CAPTURE_STREAM)] * 3
    # warm-up ran on a side stream (neither the caller's nor the capture stream), then the capture itself
    side = {s.cuda_stream for s in cuda.streams}
    assert calls[:3] == [calls[0], calls[0], FakeCuda.CAPTURE_STREAM] and calls[0] in side
    assert runner.captured(a) and not runner.captured(torch.ones(5, 3))


def test_runner_returns_copies_the_engine_can_keep(monkeypatch):
    cuda = FakeCuda(current=3).install(monkeypatch)
    runner = CudaGraphRunner(_doubler(cuda, []), GraphPool(torch.device("cpu")))
    first = runner(torch.ones(1, 2))
    second = runner(torch.zeros(1, 2))
    assert torch.equal(first, torch.full((1, 2), 2.0)) and torch.equal(second, torch.zeros(1, 2))


def test_replays_sharing_a_pool_are_ordered_across_streams(monkeypatch):
    """Graphs in one pool may reuse each other's intermediates, so each use waits for the previous one."""
    cuda = FakeCuda(current=3).install(monkeypatch)
    pool = GraphPool(torch.device("cpu"))
    with pool.exclusive():
        pass
    first_stream = cuda.current
    assert first_stream.waits == []  # nothing ran before
    cuda.current = type(cuda.current)(4)  # another thread's stream, e.g. a background warm-up
    with pool.exclusive():
        pass
    kind, event = cuda.current.waits[0]
    assert kind == "event" and event.recorded_on == [3, 4]  # waited on stream 3's use, then recorded its own
