"""ControlNet in the stream engine: equal to a diffusers-style sequential reference, live controls, loading."""

from __future__ import annotations

import pytest
import torch

from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.engine.controlnet import ControlNetSetup, keep
from dreamwire.engine.preprocess import canny, make_preprocessor
from dreamwire.engine.schedule import add_noise, lcm_denoise
from tests.conftest import frames
from tests.fakes.backends import ShapeCounting

T_INDEX = {1: (35,), 2: (32, 45), 3: (20, 35, 45)}


@pytest.fixture(scope="session")
def cn_parts(tiny_dir):
    """The tiny model with two tiny ControlNets (the second with other random weights)."""
    import dataclasses

    from dreamwire.models.controlnet import build_tiny_controlnet, load_controlnets
    from dreamwire.models.load import load_model
    from dreamwire.models.sources import ControlNetSource

    parts = load_model(str(tiny_dir), device="cpu", dtype=torch.float32)
    second = build_tiny_controlnet(tiny_dir.parent / "tiny-controlnet-seed5", seed=5)
    nets = load_controlnets((ControlNetSource("tiny"), ControlNetSource(str(second))), parts.unet)
    return dataclasses.replace(parts, controlnets=nets, controlnet_sources=("tiny", str(second)))




@pytest.fixture(scope="session")
def cn_backend(cn_parts):
    from dreamwire.backends.torch_eager import TorchBackend

    return TorchBackend(cn_parts)


@pytest.fixture
def cn_engine(cn_parts, cn_backend, prompt_encoder):
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    def make(params: dict, count: int = 1, frames_per_call: int = 1, backend=None, **config):
        config.setdefault("guidance", "none")
        setups = [ControlNetSetup("canny", 0.8), ControlNetSetup("softedge", 0.6)][:count]
        return StreamEngine(backend or cn_backend, prompt_encoder, cn_parts.spec,
                            EngineConfig(width=128, height=128, frames=frames_per_call, **config),
                            Params(params), controlnets=setups)

    return make


def reference(engine, nets, scales, images_in, starts=None, ends=None) -> torch.Tensor:
    """One frame denoised step by step as diffusers' ControlNet img2img pipeline does: each ControlNet
    at ``conditioning_scale = scale * controlnet_keep[i]``, residuals summed, then the UNet."""
    c, be = engine.consts, engine.backend
    n, f = c.steps, c.frames
    hidden = engine.embeddings.cond.hidden.expand(f, -1, -1)
    control = [make_preprocessor(s.preprocessor)(images_in) for s in engine.controlnets]
    z = be.encode(images_in)
    den = z
    for i in range(n):
        rows = c.slot(i)
        x = add_noise(den, engine.noise[rows], c.a[rows], c.b[rows])
        t = c.timesteps[rows]
        down, mid = None, None
        for k, net in enumerate(nets):
            lo, hi = (starts or [0.0] * 4)[k], (ends or [1.0] * 4)[k]
            kept = 1.0 - float(i / n < lo or (i + 1) / n > hi)
            d, m = net(x, t, hidden, controlnet_cond=control[k], conditioning_scale=scales[k] * kept,
                       return_dict=False)
            down = list(d) if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        out = be.inner.parts.unet if hasattr(be, "inner") else be.parts.unet
        eps = out(x, t, hidden, down_block_additional_residuals=down, mid_block_additional_residual=mid,
                  return_dict=False)[0]
        den = lcm_denoise(x, eps, c.a[rows], c.b[rows], c.c_skip[rows], c.c_out[rows], "epsilon")
    return be.decode(den)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("f", [1, 2])
@pytest.mark.parametrize("n", [1, 3])
@torch.inference_mode()
def test_stream_equals_controlnet_reference(cn_engine, cn_parts, n, f, count):
    e = cn_engine({"t_index_list": T_INDEX[n]}, count=count, frames_per_call=f)
    inputs = frames(n + 2, f=f, size=128, seed=3 * n + f)
    refs = [reference(e, cn_parts.controlnets[:count], [0.8, 0.6], im) for im in inputs]
    for k, im in enumerate(inputs):
        close(e.step(im).images, refs[max(0, k - (n - 1))])


@torch.inference_mode()
def test_start_end_fractions_apply_per_row(cn_engine, cn_parts):
    p = {"t_index_list": T_INDEX[3], "controlnet_start": [0.3, 0.0], "controlnet_end": [1.0, 0.6]}
    e = cn_engine(p, count=2)
    inputs = frames(5, size=128, seed=4)
    refs = [reference(e, cn_parts.controlnets, [0.8, 0.6], im, starts=[0.3, 0.0], ends=[1.0, 0.6]) for im in inputs]
    for k, im in enumerate(inputs):
        close(e.step(im).images, refs[max(0, k - 2)])
    plain = cn_engine({"t_index_list": T_INDEX[3]}, count=2)
    assert not torch.allclose(plain.step(inputs[0]).images, refs[0], atol=1e-4)


@torch.inference_mode()
def test_scale_zero_equals_no_controlnet(cn_engine, make_engine):
    p = {"t_index_list": T_INDEX[3]}
    e = cn_engine({**p, "controlnet_scale": [0.0]}, count=1)
    off = cn_engine({**p, "controlnet_enabled": [False]}, count=1)
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    plain = StreamEngine(e.backend, e.prompts, e.model, EngineConfig(width=128, height=128, guidance="none"),
                         Params(p))
    for im in frames(4, size=128, seed=9):
        ref = plain_out = None
        plain_out = plain.step(im).images
        ref = e.step(im).images
        torch.testing.assert_close(ref, plain_out, rtol=0, atol=0)
        torch.testing.assert_close(off.step(im).images, plain_out, rtol=0, atol=0)


@torch.inference_mode()
def test_toggling_live_changes_next_output_without_new_graphs(cn_engine, cn_backend):
    counting = ShapeCounting(cn_backend)
    e = cn_engine({"t_index_list": T_INDEX[3]}, count=2, backend=counting)
    twin = cn_engine({"t_index_list": T_INDEX[3]}, count=2)
    inputs = frames(8, size=128, seed=5)
    for im in inputs[:3]:
        e.step(im)
        twin.step(im)
    shapes = set(counting.shapes)
    calls = counting.controlnet_calls
    e.update(e.params.replace(controlnet_enabled=[False, True]))
    a, b = e.step(inputs[3]).images, twin.step(inputs[3]).images
    assert not torch.allclose(a, b, atol=1e-4)  # the very next output changed
    assert counting.controlnet_calls == calls + 1  # the disabled one is skipped ...
    e.update(e.params.replace(controlnet_enabled=[False, False]))
    e.step(inputs[4])
    e.update(e.params.replace(controlnet_enabled=[True, True], controlnet_scale=[1.5, 0.2]))
    e.step(inputs[5])
    assert counting.shapes == shapes  # ... and no new UNet or ControlNet shape was ever seen


def test_list_lengths_are_checked_against_loaded_controlnets(cn_engine):
    e = cn_engine({"t_index_list": T_INDEX[1]}, count=2)
    with pytest.raises(ControlError, match="controlnet_scale: 3 values, but 2 ControlNet"):
        e.check(Params({"controlnet_scale": [1.0, 1.0, 1.0]}))
    e.check(Params({"controlnet_scale": [1.0, 0.5]}))


def test_keep_rule_matches_diffusers():
    # diffusers: keep = 1 - float(i / len(timesteps) < start or (i + 1) / len(timesteps) > end)
    assert [keep(i, 4, 0.25, 0.75) for i in range(4)] == [False, True, True, False]
    assert [keep(i, 2, 0.0, 1.0) for i in range(2)] == [True, True]


def test_residual_shapes_match_the_controlnet(cn_parts):
    from dreamwire.backends.graphs import residual_shapes

    net = cn_parts.controlnets[0]
    for h, w in ((16, 16), (24, 40)):
        x = torch.randn(3, 4, h, w)
        image = torch.rand(3, 3, 8 * h, 8 * w)
        down, mid = net(x, torch.full((3,), 10.0), torch.randn(3, 77, 32), controlnet_cond=image, return_dict=False)
        assert residual_shapes(dict(cn_parts.unet.config), 3, h, w) == [tuple(t.shape) for t in (*down, mid)]


def test_canny_finds_a_squares_edges():
    img = -torch.ones(1, 3, 64, 64)
    img[..., 16:48, 16:48] = 1.0
    edges = canny(img)[0, 0]
    assert edges.shape == (64, 64) and set(edges.unique().tolist()) <= {0.0, 1.0}
    on = edges > 0
    # every side of the square is found, one or two pixels wide, and nothing far from it
    for line in (on[15:17, 20:44], on[47:49, 20:44], on[20:44, 15:17], on[20:44, 47:49]):
        assert line.any(dim=0).all() if line.shape[0] == 2 else line.any(dim=1).all()
    assert not on[20:44, 20:44].any() and not on[:10].any() and not on[54:].any()
    assert on.sum() < 4 * 34 * 2


def test_canny_of_a_flat_image_is_empty():
    assert not canny(torch.zeros(2, 3, 32, 32)).any()
