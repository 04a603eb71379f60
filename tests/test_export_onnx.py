"""ONNX export of the tiny model and the onnxruntime backend against the torch reference (acceptance 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")  # a plain ModuleNotFoundError when the [onnx] extra is absent

from dreamwire.backends.cache import engines_dir
from dreamwire.backends.export import COMPONENTS, check_size
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig

from .conftest import assert_rel_close, frames


@pytest.fixture(scope="module")
def ort_backend(tiny_parts):
    from dreamwire.backends.onnxrt import OnnxRuntimeBackend

    return OnnxRuntimeBackend(tiny_parts, width=256, height=256)


def test_export_writes_three_cached_graphs(ort_backend):
    assert set(ort_backend.paths) == set(COMPONENTS)
    for comp, path in ort_backend.paths.items():
        assert path.is_file() and path.stat().st_size > 1000
        assert path.parent.parent == engines_dir() and path.parent.name.startswith(f"{comp}-onnx-")
        assert (path.parent / "manifest.json").is_file()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(256, 256), (320, 384)])  # the export was traced at 256x256
def test_onnxruntime_matches_torch_per_component(ort_backend, torch_backend, batch, size):
    h, w = size
    g = torch.Generator().manual_seed(batch * 1000 + h)
    images = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    assert_rel_close(ort_backend.encode(images), torch_backend.encode(images))
    latents = torch.randn(batch, 4, h // 8, w // 8, generator=g)
    assert_rel_close(ort_backend.decode(latents), torch_backend.decode(latents))
    t = torch.tensor([999, 759, 499][:batch] + [259] * max(0, batch - 3), dtype=torch.long)
    cond = torch.randn(1, 77, 32, generator=g).expand(batch, -1, -1)  # non-contiguous, as the engine passes
    assert_rel_close(ort_backend.unet(latents, t, cond), torch_backend.unet(latents, t, cond))


def _engines(backends, config, params):
    from dreamwire.backends.assemble import build_engine

    return [build_engine("tiny", backend=b, device="cpu", config=config, params=params, lcm_lora=None)
            for b in backends]


@pytest.mark.parametrize("guidance,steps", [("self", 2), ("full", 3)])
def test_full_engine_onnxruntime_matches_torch_frame_for_frame(guidance, steps):
    cfg = EngineConfig(width=256, height=256, guidance=guidance)
    ref, ort = _engines(("torch", "onnxruntime"), cfg, Params({"steps": steps}))
    assert ort.backend.name == "onnxruntime" and ref.backend.name == "torch"
    for i, img in enumerate(frames(5, size=256, seed=3)):
        a, b = ref.step(img).images, ort.step(img).images
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4, msg=lambda m, i=i: f"frame {i}: {m}")
    # A live change goes through the same graphs: new steps -> new batch size, same export.
    for e in (ref, ort):
        e.update(e.params.replace(steps=steps + 1))
    img = frames(1, size=256, seed=9)[0]
    torch.testing.assert_close(ort.step(img).images, ref.step(img).images, rtol=0, atol=1e-4)


def test_resolution_change_inside_profile_reuses_export():
    from dreamwire.backends.assemble import build_engine

    build_engine("tiny", backend="onnxruntime", device="cpu", config=EngineConfig(width=256, height=256))
    before = sorted(p.name for p in engines_dir().iterdir() if not p.name.startswith("."))
    eng = build_engine("tiny", backend="onnxruntime", device="cpu", config=EngineConfig(width=320, height=192))
    assert eng.step(frames(1, size=384)[0][..., :192, :320].contiguous()).images.shape == (1, 3, 192, 320)
    assert sorted(p.name for p in engines_dir().iterdir() if not p.name.startswith(".")) == before


def test_exporter_is_chosen_explicitly(tiny_parts, tmp_path: Path, monkeypatch):
    import functools

    from dreamwire.backends import export

    seen = {}
    real = torch.onnx.export

    @functools.wraps(real)  # keeps the real signature visible, as the code inspects it
    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    export.export_onnx(tiny_parts, "decoder", tmp_path / "d.onnx", height=128, width=128)
    assert seen["dynamo"] is False and seen["opset_version"] == 17
    assert seen["dynamic_axes"]["latents"] == {0: "batch", 2: "latent_height", 3: "latent_width"}


def _declared_torch_floor() -> tuple[int, int]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    spec = next(d for d in project["project"]["dependencies"] if d.replace(" ", "").startswith("torch>="))
    major, minor = spec.split(">=")[1].split(",")[0].split(".")[:2]
    return int(major), int(minor)


_REAL_EXPORT = torch.onnx.export


def _export_before_2_4(model, args, f, export_params=True, verbose=False, training=None, input_names=None,
                       output_names=None, operator_export_type=None, opset_version=None, do_constant_folding=True,
                       dynamic_axes=None, keep_initializers_as_inputs=None, custom_opsets=None,
                       export_modules_as_functions=False, autograd_inlining=True):
    """``torch.onnx.export`` as torch < 2.4 declares it: the TorchScript exporter, and no ``dynamo`` argument
    (it appeared in 2.4; /work/shared/notes/show-path-facts.md, measured on the 2.3.1 wheel)."""
    return _REAL_EXPORT(model, args, f, dynamo=False, input_names=input_names, output_names=output_names,
                        opset_version=opset_version, do_constant_folding=do_constant_folding,
                        dynamic_axes=dynamic_axes)


def test_export_works_with_the_declared_torch_floor(tiny_parts, tmp_path, monkeypatch):
    """pyproject's torch floor is below 2.4, so export must work with 2.3's signature: no ``dynamo=``."""
    import onnxruntime as ort

    from dreamwire.backends import export

    floor = _declared_torch_floor()
    assert floor >= (2, 3)  # the floor this test simulates (older torch lacks more than this)
    if floor >= (2, 4):
        pytest.skip("the floor already has torch.onnx.export(dynamo=...)")
    monkeypatch.setattr(torch.onnx, "export", _export_before_2_4)  # what `torch.onnx.export(...)` resolves to
    path = export.export_onnx(tiny_parts, "decoder", tmp_path / "d.onnx", height=64, width=64)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"latents": np.zeros((1, 4, 8, 8), np.float32)})[0]
    assert out.shape == (1, 3, 64, 64)


def test_tensorrt_exports_are_float32_even_from_an_fp16_model(tiny_parts, tmp_path):
    import copy
    import dataclasses

    import onnx

    from dreamwire.backends import export

    half = dataclasses.replace(tiny_parts, unet=copy.deepcopy(tiny_parts.unet).half(),
                               vae=copy.deepcopy(tiny_parts.vae).half())
    path = export.export_onnx(half, "decoder", tmp_path / "d.onnx", height=64, width=64, dtype=torch.float32)
    model = onnx.load(str(path))
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT}
    assert next(half.vae.parameters()).dtype == torch.float16  # the model itself is untouched
    assert export.onnx_key(half, "decoder", dtype=torch.float32).dtype == "float32@cpu"
    assert export.onnx_key(half, "decoder").dtype == "float16@cpu"


def test_sizes_off_the_model_grid_are_rejected_with_the_fix(tiny_parts):
    assert tiny_parts.spec.size_alignment == 16  # VAE factor 8 x one UNet downsample
    with pytest.raises(ValueError, match="multiples of 16"):
        check_size(tiny_parts.spec, 264, 256)


def test_build_engines_command_exports_into_the_cache(capsys):
    from dreamwire.app.cli import main

    assert main(["build-engines", "--model", "tiny", "--resolution", "256x256", "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "rough estimate" in out and "export ONNX" in out
    for comp in COMPONENTS:
        assert f"{comp}: {engines_dir()}" in out


def test_build_engines_rejects_resolution_outside_profile(capsys):
    from dreamwire.app.cli import main

    assert main(["build-engines", "--model", "tiny", "--resolution", "1280x768", "--estimate-only"]) == 2
    assert "--profile" in capsys.readouterr().err


def test_compare_backends_reports_fps_and_components():
    """A smoke run of the CPU benchmark (2 frames): the figures in docs/benchmarks.md come from it."""
    from dreamwire.bench.backends import compare_backends, format_table

    r = compare_backends("tiny", size=128, frames=2, warmup=1, rounds=1)
    for name in ("torch", "onnxruntime"):
        assert r[name]["fps"] > 0 and r[name]["unet_ms"] > 0 and r[name]["decode_ms"] > 0
    assert r["speedup"]["torch"] == 1.0 and "| onnxruntime |" in format_table(r)
