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


def test_no_capture_after_warm_up_whatever_a_live_change_reaches(monkeypatch, tiny_parts, tiny_dir, prompt_encoder):
    """Steps 1..max, and every ControlNet on/off combination: all captured before ready, none after.

    The torch backend's networks run as CUDA-graph runners over the fake CUDA (eager CPU kernels, so
    replays return the captured results: the numbers are meaningless here, the capture count is not).
    """
    import dataclasses

    from dreamwire.backends.cudagraph import CudaGraphRunner
    from dreamwire.backends.torch_eager import TorchBackend
    from dreamwire.control.params import Params
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.controlnet import ControlNetSetup
    from dreamwire.engine.stream import StreamEngine
    from dreamwire.engine.warmup import warm_up
    from dreamwire.models.controlnet import ControlNetSource, build_tiny_controlnet, load_controlnets

    second = build_tiny_controlnet(tiny_dir.parent / "tiny-controlnet-seed5", seed=5)
    nets = load_controlnets((ControlNetSource("tiny"), ControlNetSource(str(second))), tiny_parts.unet)
    parts = dataclasses.replace(tiny_parts, controlnets=nets, controlnet_sources=("tiny", str(second)))
    FakeCuda(current=3).install(monkeypatch)
    be = TorchBackend(parts)
    be._pool = GraphPool(torch.device("cpu"))
    be._fns = {k: CudaGraphRunner(fn, be._pool, warmup=0) for k, fn in be._fns.items()}
    be.max_steps = 3  # as a TensorRT backend built for steps up to 3 says; warm-up reads it
    setups = (ControlNetSetup("canny", 0.8), ControlNetSetup("softedge", 0.6))
    engine = StreamEngine(be, prompt_encoder, parts.spec, EngineConfig(width=128, height=128, guidance="none"),
                          Params({"steps": 2}), controlnets=setups)
    warm_up(engine)
    ready = be.captures
    assert ready > 0
    g = torch.Generator().manual_seed(0)
    for steps in (3, 1, 2):
        for enabled in ((True, False), (False, True), (True, True), (False, False)):
            engine.update(Params({"steps": steps, "controlnet_enabled": enabled, "controlnet_end": (0.5, 1.0)}))
            for _ in range(steps + 1):
                engine.step(torch.rand(1, 3, 128, 128, generator=g) * 2 - 1)
    assert be.captures == ready
