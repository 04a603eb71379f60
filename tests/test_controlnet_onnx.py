"""ControlNet on onnxruntime: the exported ControlNet and residual-input UNet graphs against torch, and a
whole ControlNet stream engine on onnxruntime against the torch one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("onnxruntime")

from dreamwire.backends.export_io import CONTROLNET, RESIDUAL_UNET, residual_names
from dreamwire.control.params import Params
from dreamwire.engine.controlnet import ControlNetSetup
from tests.conftest import assert_rel_close, frames

SIZE = 128  # the exports are traced here; other sizes exercise the dynamic axes



@pytest.fixture(scope="module")
def parts2(tiny_dir):
    """The tiny model with two tiny ControlNets of different random weights."""
    from dreamwire.models.controlnet import build_tiny_controlnet, load_controlnets
    from dreamwire.models.load import load_model
    from dreamwire.models.sources import ControlNetSource

    parts = load_model(str(tiny_dir), device="cpu", dtype=torch.float32)
    second = build_tiny_controlnet(tiny_dir.parent / "tiny-controlnet-seed7", seed=7)
    nets = load_controlnets((ControlNetSource("tiny"), ControlNetSource(str(second))), parts.unet)
    return dataclasses.replace(parts, controlnets=nets, controlnet_sources=("tiny", str(second)))


@pytest.fixture(scope="module")
def backends(parts2):
    from dreamwire.backends.onnxrt import OnnxRuntimeBackend
    from dreamwire.backends.torch_eager import TorchBackend

    return OnnxRuntimeBackend(parts2, width=SIZE, height=SIZE), TorchBackend(parts2)


def test_controlnet_exports_are_the_residual_unet_and_one_graph_per_controlnet(backends):
    import onnx

    ort, _ = backends
    assert set(ort.paths) == {RESIDUAL_UNET, "encoder", "decoder", f"{CONTROLNET}0", f"{CONTROLNET}1"}
    net = onnx.load(str(ort.paths[f"{CONTROLNET}0"]))
    names = residual_names(len(net.graph.output))
    assert [o.name for o in net.graph.output] == list(names)
    unet = onnx.load(str(ort.paths[RESIDUAL_UNET]))
    assert [i.name for i in unet.graph.input][3:] == list(names)
    assert ort.paths[f"{CONTROLNET}0"].parent != ort.paths[f"{CONTROLNET}1"].parent


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(SIZE, SIZE), (144, 208)])
def test_onnxruntime_matches_torch_for_controlnet_and_residual_unet(backends, batch, size):
    ort, ref = backends
    h, w = size
    g = torch.Generator().manual_seed(batch * 1000 + h)
    x = torch.randn(batch, 4, h // 8, w // 8, generator=g)
    t = torch.tensor([999, 759, 499][:batch], dtype=torch.long)
    cond = torch.randn(1, 77, 32, generator=g).expand(batch, -1, -1)  # non-contiguous, as the engine passes
    image = torch.rand(batch, 3, h, w, generator=g)
    for k in range(2):
        got, want = ort.controlnet(k, x, t, cond, image), ref.controlnet(k, x, t, cond, image)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_rel_close(a, b)
    residuals = tuple(r * 0.7 for r in ref.controlnet(0, x, t, cond, image))
    assert_rel_close(ort.unet(x, t, cond, residuals=residuals), ref.unet(x, t, cond, residuals=residuals))
    assert_rel_close(ort.unet(x, t, cond), ref.unet(x, t, cond))  # None: zeros, the same graph


def test_residuals_change_the_onnx_unet_output(backends):
    """The residual inputs are wired into the graph (not constant-folded away)."""
    ort, ref = backends
    x, t, cond = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 77, 32)
    residuals = ref.controlnet(0, x, t, cond, torch.rand(1, 3, SIZE, SIZE))
    assert (ort.unet(x, t, cond, residuals=residuals) - ort.unet(x, t, cond)).abs().max() > 1e-3


@pytest.mark.parametrize("count", [1, 2])
def test_controlnet_engine_on_onnxruntime_matches_torch(parts2, backends, prompt_encoder, count):
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    setups = [ControlNetSetup("canny", 0.8), ControlNetSetup("softedge", 0.6)][:count]
    engines = [StreamEngine(be, prompt_encoder, parts2.spec, EngineConfig(width=SIZE, height=SIZE, guidance="self"),
                            Params({"steps": 2}), controlnets=setups) for be in backends]
    for i, img in enumerate(frames(4, size=SIZE, seed=5)):
        a, b = (e.step(img).images for e in engines)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=lambda m, i=i: f"frame {i}: {m}")
    for e in engines:  # live: scale and on/off through the same graphs
        e.update(e.params.replace(controlnet_scale=(0.3,) * count, controlnet_enabled=(True,) + (False,) * (count - 1)))
    img = frames(1, size=SIZE, seed=11)[0]
    a, b = (e.step(img).images for e in engines)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_auto_picks_onnxruntime_for_controlnets_on_cpu(parts2):
    from dreamwire.backends.select import make_backend
    from dreamwire.engine.api import EngineConfig

    be = make_backend("auto", parts2, EngineConfig(width=SIZE, height=SIZE))
    assert be.name == "onnxruntime"
