"""TensorRT's pure parts (profiles, binding plans, keys) on CPU; the real thing only where it imports (acceptance 3).

The glue (building and running) is tested in tests/test_tensorrt_glue.py against a stand-in module built from
the real 10.x/11.x API lists, and tests/test_tensorrt_api.py checks every TensorRT name the code uses against them.
"""

from __future__ import annotations

from pathlib import Path

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
    with pytest.raises(BackendUnavailable, match=r"10\.1\+ or 11\.x.*dreamwire\[tensorrt-cu1[23]\]"):
        make_backend("tensorrt", tiny_parts)


def test_build_estimate_is_positive_and_grows_with_profile():
    from dreamwire.app.build_engines import estimate

    small = estimate(865_000_000, 2_400_000, ResolutionProfile.parse("512"), BatchProfile(steps=1))  # static
    big = estimate(865_000_000, 2_400_000, ResolutionProfile(maximum=1024), BatchProfile(steps=4))
    assert 0 < small.export_s and 0 < small.build_s < big.build_s and small.vram_gb < big.vram_gb
    assert any("VRAM" in line for line in big.lines("tensorrt"))
    assert big.build_s == pytest.approx(sum(big.component_s(c) for c in ("unet", "encoder", "decoder")))
    assert big.component_s("unet") > big.component_s("decoder")


def test_workspace_follows_free_vram_unless_given():
    from dreamwire.backends.trt_plan import MIN_WORKSPACE, workspace_bytes

    assert workspace_bytes(8 << 30) == 6 << 30  # 75% of what is free now
    assert workspace_bytes(12 << 30) > workspace_bytes(8 << 30)
    assert workspace_bytes(8 << 30, workspace_gb=2.5) == int(2.5 * (1 << 30))  # the user's limit wins
    assert workspace_bytes(0) == MIN_WORKSPACE


def test_timing_cache_is_keyed_by_tensorrt_version_and_gpu(tmp_path):
    from dreamwire.backends.trt_build import timing_cache_path

    a = timing_cache_path("10.16.0", "NVIDIA H200|sm90", tmp_path)
    assert a == timing_cache_path("10.16.0", "NVIDIA H200|sm90", tmp_path) and a.parent == tmp_path / "timing"
    assert len({a, timing_cache_path("11.1.0", "NVIDIA H200|sm90", tmp_path),
                timing_cache_path("10.16.0", "NVIDIA GeForce RTX 4090|sm89", tmp_path)}) == 3


# --- only where TensorRT and a GPU exist -------------------------------------------------------


def test_tensorrt_engine_matches_torch_on_gpu(tmp_path, monkeypatch):
    _tensorrt()
    from dreamwire.backends.tensorrt import TensorRTBackend
    from dreamwire.backends.torch_eager import TorchBackend
    from dreamwire.engine.api import EngineConfig
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




# --- build-engines: the estimate checked against measured build times -------------------------------


def test_measured_build_times_are_printed_against_the_estimate_and_correct_later_ones(tmp_path, monkeypatch, capsys):
    from dreamwire.app import build_engines as build

    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    res, batch = ResolutionProfile.parse("512"), BatchProfile(steps=1)
    est = build.estimate(865_000_000, 2_400_000, res, batch)
    guess = est.component_s("unet")
    build.report_build_times(est, {"unet": 2 * guess}, "H200|tensorrt 11.1")
    assert f"build unet: estimated ~{guess:.0f} s, took {2 * guess:.0f} s (2.00x)" in capsys.readouterr().out
    machine_factor = build.correction_factor(build.history_path(), "H200|tensorrt 11.1")
    assert machine_factor == pytest.approx(2.0)
    assert build.correction_factor(build.history_path(), "RTX 4090|tensorrt 11.1") == 1.0  # per GPU/TensorRT
    corrected = build.estimate(865_000_000, 2_400_000, res, batch, correction=machine_factor)
    assert corrected.build_s == pytest.approx(2 * est.build_s)
    assert "x2.00 from builds measured on this GPU" in "\n".join(corrected.lines("tensorrt"))
    # The next build took what the corrected estimate said: the record keeps the raw estimate, no compounding.
    build.report_build_times(corrected, {"unet": corrected.component_s("unet")}, "H200|tensorrt 11.1")
    assert build.correction_factor(build.history_path(), "H200|tensorrt 11.1") == pytest.approx(2.0)
    build.history_path().write_text("{not json")
    assert build.correction_factor(build.history_path(), "H200|tensorrt 11.1") == 1.0


def test_build_trt_reports_only_engines_actually_built(monkeypatch, capsys):
    from dreamwire.app import build_engines as build
    from dreamwire.backends import trt_build

    def fake_ensure(parts, spec, *, progress, components, on_built):
        if components == ("unet",):
            progress("unet", "Building engine", 1, 1)
            on_built("unet", 12.5)
        return {components[0]: Path(f"/cache/{components[0]}/engine.plan")}

    monkeypatch.setattr(trt_build, "ensure_engines", fake_ensure)
    measured = build._build_trt(None, ResolutionProfile(), BatchProfile(), fp16=False, workspace_gb=None)
    assert measured == {"unet": 12.5}
    build.report_build_times(build.estimate(10**9, 10**7, ResolutionProfile(), BatchProfile()), {}, "x")
    assert "nothing built" in capsys.readouterr().out
