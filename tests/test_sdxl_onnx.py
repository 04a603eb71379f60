"""SDXL's UNet graph (text_embeds + time_ids inputs): ONNX export, onnxruntime against torch, TensorRT plans."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")

from dreamwire.backends.export import component_io
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import binding_plan, profile_shapes
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig
from tests.conftest import XL_SIZE as SIZE
from tests.conftest import assert_rel_close, frames


@pytest.fixture(scope="module")
def xl_ort(xl_parts):
    from dreamwire.backends.onnxrt import OnnxRuntimeBackend

    return OnnxRuntimeBackend(xl_parts, width=SIZE, height=SIZE)


def test_exported_unet_takes_the_added_conditioning(xl_ort, xl_parts):
    import onnx

    graph = onnx.load(str(xl_ort.paths["unet"])).graph
    assert [i.name for i in graph.input] == list(component_io(xl_parts, "unet").inputs)
    assert {"text_embeds", "time_ids"} <= {i.name for i in graph.input}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(SIZE, SIZE), (160, 192)])  # the export was traced at SIZE x SIZE
@torch.inference_mode()
def test_onnxruntime_unet_matches_torch(xl_ort, xl_backend, xl_prompts, batch, size):
    from dreamwire.engine.conditioning import Conditioning

    h, w = size
    g = torch.Generator().manual_seed(batch * 100 + h)
    latents = torch.randn(batch, 4, h // 8, w // 8, generator=g)
    t = torch.tensor([999, 759, 499][:batch], dtype=torch.long)
    # Different prompts and time_ids per row: a graph that broadcast row 0's added inputs would fail.
    rows = [xl_prompts.encode(p) for p in ("neon city", "forest", "desert")[:batch]]
    cond = Conditioning.cat(rows)
    added = {"text_embeds": cond.added["text_embeds"],
             "time_ids": cond.added["time_ids"] * torch.arange(1, batch + 1)[:, None]}
    assert_rel_close(xl_ort.unet(latents, t, cond.hidden, added=added),
               xl_backend.unet(latents, t, cond.hidden, added=added))


@torch.inference_mode()
def test_onnxruntime_engine_equals_torch_engine(xl_parts, xl_ort, xl_backend, xl_prompts):
    from dreamwire.engine.stream import StreamEngine

    params = Params({"t_index_list": (20, 35), "prompt": "a neon city", "guidance_scale": 2.0})
    make = [StreamEngine(be, xl_prompts, xl_parts.spec, EngineConfig(width=SIZE, height=SIZE, guidance="self"),
                         params) for be in (xl_ort, xl_backend)]
    for im in frames(3, size=SIZE, seed=2):
        assert_rel_close(make[0].step(im).images, make[1].step(im).images, rel=1e-3)


def test_tensorrt_plan_covers_the_added_inputs(xl_parts):
    spec = xl_parts.spec
    res = ResolutionProfile(minimum=256, maximum=1024, opt=512)
    shapes = profile_shapes("unet", res, BatchProfile(frames=1, guidance="self", steps=2), spec).shapes
    lo_b, opt_b, hi_b = (s[0] for s in shapes["sample"])
    assert shapes["text_embeds"] == ((lo_b, spec.pooled_dim), (opt_b, spec.pooled_dim), (hi_b, spec.pooled_dim))
    assert shapes["time_ids"] == ((lo_b, 6), (opt_b, 6), (hi_b, 6))
    plan = binding_plan("unet", ((2, 4, 128, 128), (2,), (2, 77, spec.text_dim), (2, spec.pooled_dim), (2, 6)),
                        spec, profiles := profile_shapes("unet", res, BatchProfile(steps=2), spec))
    assert plan.names[3:5] == ("text_embeds", "time_ids") and plan.outputs[0][1] == (2, 4, 128, 128)
    with pytest.raises(ValueError, match="takes 5 inputs"):
        binding_plan("unet", ((2, 4, 64, 64), (2,), (2, 77, spec.text_dim)), spec, profiles)
