"""TensorRT's pure parts (profiles, binding plans, keys) on CPU; the real thing only where it imports (acceptance 3)."""

from __future__ import annotations

import pytest
import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile, unet_batch
from dreamwire.backends.trt_plan import binding_plan, component_batches, output_shape, profile_shapes
from dreamwire.engine.spec import ModelSpec

SD = ModelSpec(kind="turbo", alphas_cumprod=torch.zeros(1000), latent_channels=4, out_channels=4, vae_scale_factor=8,
               text_tokens=77, text_dim=1024)


def _tensorrt():
    """The tensorrt module, or skip: a wheel without its libraries raises OSError, not ImportError."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:
        pytest.skip(f"TensorRT not importable here ({type(exc).__name__})")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    return tensorrt


@pytest.mark.parametrize("guidance,expected", [("none", 8), ("self", 8), ("full", 16), ("onetime", 9)])
def test_unet_batch_per_guidance_mode(guidance, expected):
    assert unet_batch(4, 2, guidance) == expected  # n=4 steps, f=2 frames


def test_batch_profile_spans_priming_to_max_steps():
    p = BatchProfile(frames=1, guidance="self", steps=2, max_steps=8)
    assert (p.minimum, p.opt, p.maximum) == (1, 2, 8)
    full = BatchProfile(frames=2, guidance="full", steps=3, max_steps=4)
    assert (full.minimum, full.opt, full.maximum) == (4, 12, 16)
    onetime = BatchProfile(frames=1, guidance="onetime", steps=4)
    # Max covers the one-off call after a negative-prompt change: the negative on every row (2*n*f).
    assert (onetime.minimum, onetime.opt, onetime.maximum) == (1, 5, 16)
    with pytest.raises(ValueError):
        BatchProfile(steps=9, max_steps=8)
    with pytest.raises(ValueError):
        BatchProfile(guidance="cfg")


def test_resolution_profile_default_is_dynamic_256_to_1024_step_64():
    p = ResolutionProfile()
    assert p.sizes() == list(range(256, 1025, 64)) and p.opt == 512
    assert p.contains(512, 768) and p.contains(256, 1024)
    assert not p.contains(520, 512) and not p.contains(1088, 512) and not p.contains(192, 256)
    with pytest.raises(ValueError, match="rebuild with a wider --profile"):
        p.check(1280, 720)


def test_resolution_profile_parse_and_around():
    assert ResolutionProfile.parse("256-1024") == ResolutionProfile(256, 1024, 64, 512)
    assert ResolutionProfile.parse("512-768/128", opt=640) == ResolutionProfile(512, 768, 128, 640)
    static = ResolutionProfile.parse("512")
    assert (static.minimum, static.maximum, static.opt) == (512, 512, 512) and static.contains(512, 512)
    wide = ResolutionProfile.around(1280, 720)
    assert wide.contains(1280, 704) and wide.maximum == 1280 and wide.minimum == 256 and wide.opt == 1280
    assert ResolutionProfile.around(512, 512) == ResolutionProfile()
    with pytest.raises(ValueError):
        ResolutionProfile(minimum=300)


def test_unet_profile_shapes_cover_priming_and_max_steps():
    res = ResolutionProfile(minimum=256, maximum=1024, opt=512)
    shapes = profile_shapes("unet", res, BatchProfile(frames=1, guidance="self", steps=4), SD).shapes
    assert shapes["sample"] == ((1, 4, 32, 32), (4, 4, 64, 64), (8, 4, 128, 128))
    assert shapes["timestep"] == ((1,), (4,), (8,))
    assert shapes["encoder_hidden_states"] == ((1, 77, 1024), (4, 77, 1024), (8, 77, 1024))


def test_vae_profiles_use_frames_and_pixel_sizes():
    res = ResolutionProfile(minimum=256, maximum=768, opt=512)
    batch = BatchProfile(frames=2, guidance="full", steps=2)
    assert component_batches("encoder", batch) == (1, 2, 2)
    enc = profile_shapes("encoder", res, batch, SD).shapes
    assert enc["images"] == ((1, 3, 256, 256), (2, 3, 512, 512), (2, 3, 768, 768))
    dec = profile_shapes("decoder", res, batch, SD).shapes
    assert dec["latents"] == ((1, 4, 32, 32), (2, 4, 64, 64), (2, 4, 96, 96))


def test_output_shapes():
    assert output_shape("unet", (3, 4, 64, 48), SD) == (3, 4, 64, 48)
    assert output_shape("encoder", (1, 3, 512, 384), SD) == (1, 4, 64, 48)
    assert output_shape("decoder", (1, 4, 64, 48), SD) == (1, 3, 512, 384)


def test_binding_plan_names_shapes_and_is_hashable_per_shape():
    prof = profile_shapes("unet", ResolutionProfile(), BatchProfile(steps=2), SD)
    plan = binding_plan("unet", ((2, 4, 64, 64), (2,), (2, 77, 1024)), SD, prof)
    assert plan.names == ("sample", "timestep", "encoder_hidden_states", "model_output")
    assert plan.outputs == (("model_output", (2, 4, 64, 64)),)
    same = binding_plan("unet", ((2, 4, 64, 64), (2,), (2, 77, 1024)), SD, prof)
    other = binding_plan("unet", ((3, 4, 64, 64), (3,), (3, 77, 1024)), SD, prof)
    assert len({plan, same, other}) == 2  # one buffer set per distinct shape


def test_binding_plan_outside_profile_says_how_to_fix():
    prof = profile_shapes("unet", ResolutionProfile(maximum=768), BatchProfile(steps=2, max_steps=4), SD)
    with pytest.raises(ValueError, match="build-engines"):
        binding_plan("unet", ((5, 4, 64, 64), (5,), (5, 77, 1024)), SD, prof)  # batch 5 > max 4
    with pytest.raises(ValueError, match="outside the engine profile"):
        binding_plan("unet", ((2, 4, 128, 128), (2,), (2, 77, 1024)), SD, prof)  # 1024 px > 768
    with pytest.raises(ValueError, match="takes 3 inputs"):
        binding_plan("unet", ((2, 4, 64, 64),), SD, prof)


def test_tensorrt_backend_without_tensorrt_names_the_extra(tiny_parts, monkeypatch):
    from tests.conftest import fail_import

    fail_import(monkeypatch, "tensorrt", OSError("libnvonnxparser.so.10: cannot open shared object file"))
    from dreamwire.backends.select import make_backend, tensorrt_importable

    assert not tensorrt_importable()
    with pytest.raises(BackendUnavailable, match=r"dreamwire\[tensorrt\]"):
        make_backend("tensorrt", tiny_parts)


def test_build_estimate_is_positive_and_grows_with_profile():
    from dreamwire.app.build import estimate

    small = estimate(865_000_000, 2_400_000, ResolutionProfile.parse("512"), BatchProfile(steps=1))  # static
    big = estimate(865_000_000, 2_400_000, ResolutionProfile(maximum=1024), BatchProfile(steps=4))
    assert 0 < small.export_s and 0 < small.build_s < big.build_s and small.vram_gb < big.vram_gb
    assert any("VRAM" in line for line in big.lines("tensorrt"))


# --- only where TensorRT and a GPU exist -------------------------------------------------------


def test_tensorrt_engine_matches_torch_on_gpu(tmp_path, monkeypatch):
    _tensorrt()
    from dreamwire.backends.tensorrt import TensorRTBackend
    from dreamwire.backends.torch_eager import TorchBackend
    from dreamwire.engine.config import EngineConfig
    from dreamwire.models.load import load_model

    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    parts = load_model("tiny", device="cuda", dtype=torch.float16, lcm_lora=None)
    cfg = EngineConfig(width=256, height=256)
    trt_be = TensorRTBackend(parts, cfg, profile=ResolutionProfile(256, 512, 64, 256), max_steps=4)
    ref = TorchBackend(parts)
    x = torch.randn(2, 4, 32, 32, device="cuda", dtype=torch.float16)
    t = torch.tensor([999, 499], device="cuda")
    c = torch.randn(2, 77, 32, device="cuda", dtype=torch.float16)
    for _ in range(2):  # second call replays the CUDA graph
        torch.testing.assert_close(trt_be.unet(x, t, c), ref.unet(x, t, c), rtol=2e-2, atol=2e-2)
    img = torch.rand(1, 3, 320, 256, device="cuda", dtype=torch.float16) * 2 - 1
    torch.testing.assert_close(trt_be.encode(img), ref.encode(img), rtol=2e-2, atol=2e-2)


# --- the TensorRT glue against a stand-in module: call order and buffer reuse, no GPU ---------------


class _FakeContext:
    def __init__(self, runner_box: list) -> None:
        self.box = runner_box
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.calls: list[str] = []

    def set_input_shape(self, name, shape):
        self.calls.append(f"shape {name}")
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        self.calls.append("execute")
        runner = self.box[0]
        bound = runner._bound[runner._active]
        assert self.addresses["latents"] == bound.inputs[0].data_ptr()
        assert self.addresses["images"] == bound.outputs[0].data_ptr()
        bound.outputs[0].copy_(torch.nn.functional.interpolate(bound.inputs[0][:, :3], scale_factor=8))
        return True


def _fake_trt(monkeypatch):
    from unittest import mock

    trt = mock.MagicMock(name="tensorrt")
    trt.__version__ = "10.0.0-fake"
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    return trt


def test_engine_runner_binds_once_per_shape_and_copies_outputs(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from dreamwire.backends import tensorrt as trt_mod

    trt = _fake_trt(monkeypatch)
    box: list = []
    ctx = _FakeContext(box)
    trt.Runtime.return_value.deserialize_cuda_engine.return_value.create_execution_context.return_value = ctx
    trt.DataType.FLOAT, trt.DataType.HALF = "float", "half"
    trt.Runtime.return_value.deserialize_cuda_engine.return_value.get_tensor_dtype.return_value = "float"
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: SimpleNamespace(cuda_stream=0))
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"plan")
    prof = profile_shapes("decoder", ResolutionProfile(), BatchProfile(), SD)
    runner = trt_mod.EngineRunner(trt, plan, "decoder", SD, prof, torch.device("cpu"))
    box.append(runner)
    a = torch.randn(1, 4, 32, 32)
    out1 = runner(a)
    out2 = runner(a * 2)
    assert out1.shape == (1, 3, 256, 256) and torch.allclose(out2, 2 * out1)
    assert out1.data_ptr() != out2.data_ptr()  # results are copies, the I/O buffer is reused
    assert ctx.calls == ["shape latents", "execute", "execute"]  # shapes/addresses set once per shape
    runner(torch.randn(1, 4, 40, 48))
    assert ctx.shapes["latents"] == (1, 4, 40, 48) and len(runner._bound) == 2
    runner(a)
    assert ctx.calls[-2:] == ["shape latents", "execute"] and len(runner._bound) == 2  # old buffers re-used
    with pytest.raises(ValueError, match="outside the engine profile"):
        runner(torch.randn(1, 4, 136, 136))  # 1088 px > 1024


def test_build_plan_sets_fp16_and_the_profile(monkeypatch, tmp_path):
    from dreamwire.backends import tensorrt as trt_mod

    trt = _fake_trt(monkeypatch)
    builder = trt.Builder.return_value
    trt.OnnxParser.return_value.parse_from_file.return_value = True
    builder.build_serialized_network.return_value = b"serialized"
    shapes = profile_shapes("unet", ResolutionProfile(), BatchProfile(steps=2), SD)
    out = trt_mod.build_plan(tmp_path / "m.onnx", tmp_path / "engine.plan", shapes, fp16=True, workspace_gb=4)
    assert out.read_bytes() == b"serialized"
    config = builder.create_builder_config.return_value
    config.set_flag.assert_called_once_with(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit.assert_called_once_with(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    profile = builder.create_optimization_profile.return_value
    profile.set_shape.assert_any_call("sample", (1, 4, 32, 32), (2, 4, 64, 64), (8, 4, 128, 128))
    assert profile.set_shape.call_count == 3
    config.add_optimization_profile.assert_called_once_with(profile)
    trt.OnnxParser.return_value.parse_from_file.return_value = False
    trt.OnnxParser.return_value.num_errors = 0
    with pytest.raises(RuntimeError, match="could not parse"):
        trt_mod.build_plan(tmp_path / "m.onnx", tmp_path / "x.plan", shapes)


def test_ensure_engines_builds_once_and_exports_only_when_building(tiny_parts, monkeypatch, tmp_path):
    import dataclasses
    from types import SimpleNamespace

    from dreamwire.backends import tensorrt as trt_mod

    _fake_trt(monkeypatch)
    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, config=tiny_parts.unet.config)
    parts = dataclasses.replace(tiny_parts, unet=unet)
    monkeypatch.setattr(trt_mod, "gpu_signature", lambda device: "Fake GPU|sm90")
    exported, built, progress = [], [], []
    monkeypatch.setattr(trt_mod, "cached_onnx", lambda p, comp, **kw: exported.append(comp) or tmp_path / comp)

    def fake_build(onnx, plan, shapes, *, fp16, workspace_gb, progress):
        built.append((onnx.name, tuple(shapes.shapes)))
        if progress is not None:
            progress("Building engine", 1, 2)
        plan.write_bytes(b"plan-" + onnx.name.encode())

    monkeypatch.setattr(trt_mod, "build_plan", fake_build)
    spec = trt_mod.EngineSpec(ResolutionProfile(256, 512, 64, 256), BatchProfile(steps=2, max_steps=4))
    plans = trt_mod.ensure_engines(parts, spec, progress=lambda *a: progress.append(a))
    assert exported == ["unet", "encoder", "decoder"] and len(built) == 3
    assert built[0] == ("unet", ("sample", "timestep", "encoder_hidden_states"))
    assert progress[0] == ("unet", "Building engine", 1, 2)
    assert plans["decoder"].read_bytes() == b"plan-decoder" and "-trt-" in plans["decoder"].parent.name
    again = trt_mod.ensure_engines(parts, spec)
    assert again == plans and len(exported) == 3 and len(built) == 3  # cached: no export, no build
    wider = dataclasses.replace(spec, resolution=ResolutionProfile(256, 768, 64, 256))
    trt_mod.ensure_engines(parts, wider, components=("unet",))
    assert len(built) == 4  # a new profile is a new engine
