"""The TensorRT glue on CPU, against a stand-in ``tensorrt`` of each real release's API (tests/fakes/tensorrt.py).

Building: strongly typed for 10.x and 11.x, no FP16 flag, --fp32 really float32, the timing cache
saved and reused, the workspace from free VRAM, plans written atomically. Running: a context and a
graph per shape, one scratch block and one graph pool, never the legacy default stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import profile_shapes
from dreamwire.engine.spec import ModelSpec
from tests.fakes import tensorrt as fake_trt
from tests.fakes.cuda import FakeCuda

SD = ModelSpec(kind="turbo", alphas_cumprod=torch.zeros(1000), latent_channels=4, out_channels=4, vae_scale_factor=8,
               text_tokens=77, text_dim=1024)
VERSIONS = ["10.1.0", "10.16.0", "11.1.0", "11.4.0.106"]  # 11.4.0.106: PyPI's newest (its wheel's API list)


def _install(monkeypatch, version: str, cuda: FakeCuda | None = None, kernel=None):
    trt = fake_trt.make(version, cuda=cuda, kernel=kernel)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    return trt


# --- building -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_build_plan_is_strongly_typed_without_fp16_flag(monkeypatch, tmp_path, version):
    from dreamwire.backends import trt_build

    trt = _install(monkeypatch, version)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    shapes = profile_shapes("unet", ResolutionProfile(), BatchProfile(steps=2), SD)
    plan = trt_build.build_plan(onnx, tmp_path / "engine.plan", shapes, workspace=4 << 30)
    assert plan.read_bytes() == b"serialized-plan"
    flags = trt.log.named("create_network")[0][1]
    # TensorRT 10: the STRONGLY_TYPED bit (value 1 there); TensorRT 11: always strongly typed, flag deprecated.
    assert flags == (1 << 1 if version.startswith("10.") else 0)
    assert trt.log.named("set_flag") == [] and trt.log.named("clear_flag") == []  # precision is in the ONNX types
    assert trt.log.named("set_memory_pool_limit") == [("set_memory_pool_limit", "MemoryPoolType.WORKSPACE", 4 << 30)]
    profiles = trt.log.named("add_optimization_profile")
    assert len(profiles) == 1 and profiles[0][1]["sample"] == ((1, 4, 32, 32), (2, 4, 64, 64), (8, 4, 128, 128))


@pytest.mark.parametrize("version", ["10.16.0", "11.1.0"])
def test_fp32_build_clears_tf32(monkeypatch, tmp_path, version):
    from dreamwire.backends import trt_build

    trt = _install(monkeypatch, version)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    shapes = profile_shapes("decoder", ResolutionProfile(), BatchProfile(), SD)
    trt_build.build_plan(tmp_path / "m.onnx", tmp_path / "p.plan", shapes, workspace=1 << 30, strict_fp32=True)
    assert trt.log.named("clear_flag") == [("clear_flag", "BuilderFlag.TF32")]


def test_timing_cache_is_saved_after_a_build_and_reused_by_the_next(monkeypatch, tmp_path, caplog):
    from dreamwire.backends import trt_build

    trt = _install(monkeypatch, "11.1.0")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    cache = tmp_path / "timing" / "gpu.cache"
    shapes = profile_shapes("decoder", ResolutionProfile(), BatchProfile(), SD)
    trt_build.build_plan(tmp_path / "m.onnx", tmp_path / "a.plan", shapes, workspace=1 << 30, timing_cache=cache)
    assert cache.read_bytes() == b"+timings"  # serialized after the build
    trt_build.build_plan(tmp_path / "m.onnx", tmp_path / "b.plan", shapes, workspace=1 << 30, timing_cache=cache)
    assert trt.log.named("create_timing_cache")[-1] == ("create_timing_cache", b"+timings")  # loaded before it
    assert cache.read_bytes() == b"+timings+timings"
    cache.write_bytes(b"corrupt bytes")  # an unreadable cache is reported and replaced, never fatal
    trt_build.build_plan(tmp_path / "m.onnx", tmp_path / "c.plan", shapes, workspace=1 << 30, timing_cache=cache)
    assert "timing cache" in caplog.text and cache.read_bytes() == b"+timings"
    assert not list(cache.parent.glob(".*.tmp"))


def test_failed_build_leaves_no_plan_and_keeps_the_old_one(monkeypatch, tmp_path):
    from dreamwire.backends import trt_build

    trt = _install(monkeypatch, "10.16.0")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"old engine")
    trt.fail_build = True
    shapes = profile_shapes("decoder", ResolutionProfile(), BatchProfile(), SD)
    with pytest.raises(RuntimeError, match="failed to build"):
        trt_build.build_plan(tmp_path / "m.onnx", plan, shapes, workspace=1 << 30)
    assert plan.read_bytes() == b"old engine" and sorted(p.name for p in tmp_path.iterdir()) == ["engine.plan",
                                                                                                  "m.onnx"]
    with pytest.raises(RuntimeError, match="could not parse"):
        trt_build.build_plan(tmp_path / "missing.onnx", plan, shapes, workspace=1 << 30)


def test_atomic_write_never_leaves_a_half_file(tmp_path, monkeypatch):
    import os

    from dreamwire.backends.cache import atomic_write

    target = tmp_path / "engine.plan"
    atomic_write(target, bytearray(b"first"))
    assert target.read_bytes() == b"first"

    def killed(fd):  # the process dies after writing part of the bytes, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"second, longer engine")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["engine.plan"]


def _cuda_parts(tiny_parts):
    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, config=tiny_parts.unet.config)
    return dataclasses.replace(tiny_parts, unet=unet)


@pytest.mark.parametrize("fp16", [True, False])
def test_ensure_engines_builds_once_from_float32_exports(tiny_parts, monkeypatch, tmp_path, fp16):
    from dreamwire.backends import trt_build

    _install(monkeypatch, "11.1.0")
    cuda = FakeCuda().install(monkeypatch)
    cuda.free = 10 << 30
    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    monkeypatch.setattr(trt_build, "gpu_signature", lambda device: "Fake GPU|sm90")
    exported, mixed, built, timed = [], [], [], []
    monkeypatch.setattr(trt_build, "cached_onnx",
                        lambda p, comp, dtype=None, **kw: exported.append((comp, dtype)) or tmp_path / comp)
    monkeypatch.setattr(trt_build, "mixed_onnx", lambda p, comp, src: mixed.append(comp) or tmp_path / f"{comp}16")

    def fake_build(onnx, plan, shapes, *, workspace, strict_fp32, timing_cache, progress):
        built.append((onnx.name, workspace, strict_fp32, timing_cache.parent.name))
        plan.write_bytes(b"plan-" + onnx.name.encode())

    monkeypatch.setattr(trt_build, "build_plan", fake_build)
    spec = trt_build.EngineSpec(ResolutionProfile(256, 512, 64, 256), BatchProfile(steps=2, max_steps=4), fp16=fp16)
    plans = trt_build.ensure_engines(_cuda_parts(tiny_parts), spec, on_built=lambda c, s: timed.append(c))
    assert exported == [(c, torch.float32) for c in ("unet", "encoder", "decoder")]  # never the fp16 model's dtype
    assert mixed == (["unet", "encoder", "decoder"] if fp16 else [])  # --fp32: the float32 graph, no cast pass
    suffix = "16" if fp16 else ""
    assert built[0] == (f"unet{suffix}", int(0.75 * (10 << 30)), not fp16, "timing")
    assert timed == ["unet", "encoder", "decoder"]
    assert plans["decoder"].read_bytes() == f"plan-decoder{suffix}".encode()
    again = trt_build.ensure_engines(_cuda_parts(tiny_parts), spec, on_built=lambda c, s: timed.append(c))
    assert again == plans and len(built) == 3 and len(timed) == 3  # cached: nothing exported, built or timed
    other = trt_build.ensure_engines(_cuda_parts(tiny_parts), dataclasses.replace(spec, fp16=not fp16),
                                     components=("unet",))
    assert other["unet"] != plans["unet"]  # precision is part of the engine key


def test_ensure_engines_passes_progress_per_component(tiny_parts, monkeypatch, tmp_path):
    from dreamwire.backends import trt_build

    _install(monkeypatch, "10.16.0")
    FakeCuda().install(monkeypatch)
    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    monkeypatch.setattr(trt_build, "gpu_signature", lambda device: "Fake GPU|sm90")
    monkeypatch.setattr(trt_build, "cached_onnx", lambda p, comp, **kw: tmp_path / comp)
    monkeypatch.setattr(trt_build, "mixed_onnx", lambda p, comp, src: src)

    def fake_build(onnx, plan, shapes, *, progress, **kw):
        progress("Building engine", 1, 2)
        plan.write_bytes(b"plan")

    monkeypatch.setattr(trt_build, "build_plan", fake_build)
    seen = []
    spec = trt_build.EngineSpec(ResolutionProfile(256, 512, 64, 256), BatchProfile(steps=2, max_steps=4))
    trt_build.ensure_engines(_cuda_parts(tiny_parts), spec, progress=lambda *a: seen.append(a), components=("unet",))
    assert seen == [("unet", "Building engine", 1, 2)]


# --- running --------------------------------------------------------------------------------------


def _decoder_kernel(context) -> None:
    """What the fake engine computes: images = nearest-upsampled first 3 latent channels."""
    b, c, h, w = context.shapes["latents"]
    x = fake_trt.tensor_at(context.addresses["latents"], (b, c, h, w))
    out = fake_trt.tensor_at(context.addresses["images"], (b, 3, 8 * h, 8 * w))
    out.copy_(torch.nn.functional.interpolate(x[:, :3], scale_factor=8))


def _runner(monkeypatch, tmp_path, *, current: int = 7, cuda_graph: bool = True, version: str = "11.1.0",
            device: str = "cpu", infer=fake_trt.infer_sd_shapes):
    from dreamwire.backends.cudagraph import GraphPool
    from dreamwire.backends.trt_run import EngineRunner

    cuda = FakeCuda(current=current).install(monkeypatch)
    trt = fake_trt.make(version, cuda=cuda, kernel=_decoder_kernel, infer=infer)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"plan")
    prof = profile_shapes("decoder", ResolutionProfile(), BatchProfile(), SD)
    pool = GraphPool(torch.device(device))
    runner = EngineRunner(trt, plan, "decoder", SD, prof, torch.device(device), pool, cuda_graph=cuda_graph)
    return runner, trt, cuda, pool


def _expected(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(x[:, :3], scale_factor=8)


@pytest.mark.parametrize("version", ["10.1.0", "11.1.0"])
def test_each_shape_gets_its_own_context_and_graph(monkeypatch, tmp_path, version):
    runner, trt, cuda, pool = _runner(monkeypatch, tmp_path, version=version)
    a, b = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 40, 48)
    torch.testing.assert_close(runner(a), _expected(a))  # uncaptured first run, then captured
    torch.testing.assert_close(runner(a * 2), _expected(a * 2))  # a replay, on the new input
    torch.testing.assert_close(runner(b), _expected(b))
    torch.testing.assert_close(runner(a * 3), _expected(a * 3))  # A's graph after B: A's own context, untouched
    contexts = [c[1] for c in trt.log.named("context")]
    assert len(contexts) == 2 and len(runner._shapes) == 2
    for ctx in contexts:  # shapes set once, when the context was made, never changed for another shape
        assert len([c for c in trt.log.named("set_input_shape") if c[1] is ctx]) == 1
        assert ctx.strategy == "ExecutionContextAllocationStrategy.USER_MANAGED"
    assert contexts[0].shapes["latents"] == (1, 4, 32, 32) and contexts[1].shapes["latents"] == (1, 4, 40, 48)
    # one scratch block for every context (they never run at once), sized for the engine's largest shape
    assert {c.memory for c in contexts} == {(runner.scratch.data_ptr(), 4096)}
    # one pool handle for every capture, thread-local capture mode, and each capture counted
    assert pool.captures == 2 and len(cuda.pools) == 1
    assert [(p, mode) for p, mode, _ in cuda.captures] == [(cuda.pools[0], "thread_local")] * 2
    assert [len(c.executed_on) for c in contexts] == [2, 2]  # per shape: one real run + one captured, then replays


def test_execute_runs_on_the_current_stream(monkeypatch, tmp_path):
    runner, trt, cuda, _ = _runner(monkeypatch, tmp_path, current=7, cuda_graph=False)
    runner(torch.randn(1, 4, 32, 32))
    runner(torch.randn(1, 4, 32, 32))
    ctx = trt.log.named("context")[0][1]
    assert ctx.executed_on == [7, 7] and cuda.streams == []  # the engine thread's stream, no side stream


def test_execute_never_uses_the_legacy_default_stream(monkeypatch, tmp_path):
    runner, trt, cuda, _ = _runner(monkeypatch, tmp_path, current=0, cuda_graph=False)
    x = torch.randn(1, 4, 32, 32)
    torch.testing.assert_close(runner(x), _expected(x))
    ctx = trt.log.named("context")[0][1]
    side = cuda.streams[0]
    assert ctx.executed_on == [side.cuda_stream] and side.cuda_stream != 0
    assert ("stream", 0) in side.waits and ("stream", side.cuda_stream) in cuda.default.waits  # ordered both ways


def test_runner_rejects_shapes_outside_the_profile(monkeypatch, tmp_path):
    runner, *_ = _runner(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match="outside the engine profile"):
        runner(torch.randn(1, 4, 136, 136))  # 1088 px > 1024


def test_an_output_shape_the_engine_disagrees_with_is_an_error_not_an_overrun(monkeypatch, tmp_path):
    """The buffers come from our shape rules; TensorRT writes what it infers. A mismatch must raise."""
    def upscaled_4x(inputs, name):  # an engine whose decoder upsamples 4x, where the rules assume 8x
        b, _, h, w = inputs["latents"]
        return (b, 3, 4 * h, 4 * w)

    runner, trt, *_ = _runner(monkeypatch, tmp_path, infer=upscaled_4x)
    with pytest.raises(RuntimeError, match=r"output 'images' is \(1, 3, 128, 128\).*sized \(1, 3, 256, 256\)"):
        runner(torch.randn(1, 4, 32, 32))
    assert all(not c[1].executed_on for c in trt.log.named("context"))  # nothing ran into the small buffer


def test_engine_and_contexts_are_made_on_the_runners_device_not_the_current_one(monkeypatch, tmp_path):
    monkeypatch.setattr(torch, "empty", _cpu(torch.empty))  # buffers on the CPU; the device is cuda:1 by name
    runner, trt, cuda, _ = _runner(monkeypatch, tmp_path, device="cuda:1")
    assert cuda.device_index == 0 and runner.engine.device == 1
    x = torch.randn(1, 4, 32, 32)
    torch.testing.assert_close(runner(x), _expected(x))
    assert [c[1].device for c in trt.log.named("context")] == [1] and cuda.device_index == 0


def test_backend_shares_one_scratch_and_counts_captures(tiny_parts, monkeypatch, tmp_path):
    from dreamwire.backends import tensorrt as trt_mod

    cuda = FakeCuda(current=5).install(monkeypatch)
    _install(monkeypatch, "11.1.0", cuda=cuda, kernel=_decoder_kernel)
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"plan")
    monkeypatch.setattr(trt_mod, "ensure_engines", lambda parts, spec: dict.fromkeys(("unet", "encoder",
                                                                                       "decoder"), plan))
    parts = _cuda_parts(tiny_parts)
    monkeypatch.setattr(torch, "empty", _cpu(torch.empty))
    be = trt_mod.TensorRTBackend(parts, profile=ResolutionProfile(256, 512, 64, 256))
    scratch = {id(r.scratch) for r in be._run.values()}
    assert len(scratch) == 1 and be.captures == 0
    be.decode(torch.randn(1, 4, 32, 32))
    assert be.captures == 1


def _cpu(empty):
    def on_cpu(*args, device=None, **kwargs):
        return empty(*args, **kwargs)

    return on_cpu


def test_fake_api_matches_the_cited_lists():
    """The stand-in itself: no name its release lacks (checked in make()), and FP16 gone in 11.x."""
    assert hasattr(fake_trt.make("10.16.0").BuilderFlag, "FP16")
    assert not hasattr(fake_trt.make("11.1.0").BuilderFlag, "FP16")
    assert not hasattr(fake_trt.make("11.1.0").ICudaEngine, "device_memory_size")
    assert Path(fake_trt.__file__).parent.parent.joinpath("data", "tensorrt_api.json").is_file()
