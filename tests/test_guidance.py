"""Guidance strategies against the textbook CFG formula and the RCFG definitions."""

from __future__ import annotations

import pytest
import torch

from dreamwire.control.params import Params
from dreamwire.engine.guidance import (
    Embeddings,
    FullGuidance,
    GuidanceInputs,
    NoGuidance,
    SelfNegative,
    cfg,
    make_guidance,
    rcfg,
)
from dreamwire.engine.schedule import alpha_beta, timestep_grid
from tests.conftest import frames


def test_cfg_formula():
    u, c = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(cfg(u, c, 7.5), u + 7.5 * (c - u))
    torch.testing.assert_close(cfg(u, c, 1.0), c)


def test_rcfg_delta_blends_between_none_and_paper():
    c, v = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(rcfg(c, v, 3.0, 0.0), c)  # delta 0: no guidance
    torch.testing.assert_close(rcfg(c, v, 3.0, 1.0), v + 3.0 * (c - v))  # delta 1: CFG with virtual negative


def _inputs(tiny_parts, rows=2, new_rows=2, scale=4.0, delta=1.0):
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([359, 99][:rows])
    a, b = alpha_beta(tiny_parts.spec.alphas_cumprod, t)
    a, b = a.float().view(-1, 1, 1, 1), b.float().view(-1, 1, 1, 1)
    x = torch.randn(rows, 4, 32, 32, generator=g)
    z = torch.randn(rows, 4, 32, 32, generator=g)
    return GuidanceInputs(x=x, timesteps=t, a=a, b=b, new_rows=new_rows, z_new=z, ref_inflight=None,
                          scale=scale, delta=delta, prediction_type="epsilon")


def _plain(backend):
    """A backend's ``unet`` as a strategy calls it, for a model with no per-frame inputs (as stream.py does)."""

    def call(x, t, cond, rows):
        return backend.unet(x, t, cond.hidden, **({"added": cond.added} if cond.added else {}))

    return call


def _emb(prompt_encoder):
    return Embeddings(cond=prompt_encoder.encode("a red fox"), negative=prompt_encoder.encode("blurry"))


def test_full_guidance_equals_two_separate_unet_calls(tiny_parts, torch_backend, prompt_encoder):
    emb, g = _emb(prompt_encoder), _inputs(tiny_parts)
    unet = torch_backend.unet
    out, _ = FullGuidance()(_plain(torch_backend), emb, g)
    eps_u = unet(g.x, g.timesteps, emb.negative.hidden.expand(2, -1, -1))
    eps_c = unet(g.x, g.timesteps, emb.cond.hidden.expand(2, -1, -1))
    torch.testing.assert_close(out, eps_u + g.scale * (eps_c - eps_u), rtol=1e-5, atol=5e-5)


def test_self_negative_uses_residual_noise_toward_input_latent(tiny_parts, torch_backend, prompt_encoder):
    emb, g = _emb(prompt_encoder), _inputs(tiny_parts)
    out, ref = SelfNegative()(_plain(torch_backend), emb, g)
    eps_c = torch_backend.unet(g.x, g.timesteps, emb.cond.hidden.expand(2, -1, -1))
    virtual = (g.x - g.a * g.z_new) / g.b  # the paper's virtual residual noise
    torch.testing.assert_close(out, virtual + g.scale * (eps_c - virtual), rtol=1e-5, atol=5e-5)
    torch.testing.assert_close(ref, g.z_new)


def test_self_with_zero_delta_equals_none(tiny_parts, torch_backend, prompt_encoder):
    emb = _emb(prompt_encoder)
    g = _inputs(tiny_parts, delta=0.0)
    a, _ = SelfNegative()(_plain(torch_backend), emb, g)
    b, _ = NoGuidance()(_plain(torch_backend), emb, g)
    torch.testing.assert_close(a, b)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="guidance mode"):
        make_guidance("initialize")


def test_engine_self_delta0_equals_none(make_engine):
    p = Params({"t_index_list": (20, 35, 45), "guidance_scale": 3.0, "delta": 0.0})
    e_self, e_none = make_engine(p, guidance="self"), make_engine(p, guidance="none")
    for img in frames(4):
        torch.testing.assert_close(e_self.step(img).images, e_none.step(img).images)


def test_engine_full_guidance_differs_from_none_and_uses_double_batch(make_engine):
    p = Params({"t_index_list": (32, 45), "guidance_scale": 3.0})
    e = make_engine(p, guidance="full", counting=True)
    e0 = make_engine(p, guidance="none")
    outs = [(e.step(img).images, e0.step(img).images) for img in frames(3)]
    assert all(not torch.allclose(a, b) for a, b in outs)
    assert e.backend.unet_batches[-1] == 2 * 2


@pytest.mark.parametrize("n", [1, 2, 4])
def test_onetime_issues_n_plus_one_rows_per_call(make_engine, n):
    idx = (18, 26, 35, 45)[-n:]
    e = make_engine(Params({"t_index_list": idx, "guidance_scale": 2.0}), guidance="onetime", counting=True)
    for img in frames(3):
        before = len(e.backend.unet_batches)
        e.step(img)
    # Steady state: exactly one UNet call on n*f + 1 rows (f = 1).
    assert e.backend.unet_batches[before:] == [n + 1]
    assert e.backend.unet_batches[-1] == n * 1 + 1


def test_onetime_with_two_frames_still_adds_a_single_row(make_engine):
    e = make_engine(Params({"t_index_list": (32, 45)}), guidance="onetime", counting=True, frames=2)
    for img in frames(3, f=2):
        e.step(img)
    assert e.backend.unet_batches[-1] == 2 * 2 + 1


def test_onetime_reference_for_other_new_frames_follows_the_newest_negative(tiny_parts, torch_backend,
                                                                          prompt_encoder):
    """f = 2: frame 0's reference is its own input shifted by the newest frame's negative direction."""
    from dreamwire.engine.guidance import OnetimeNegative
    from dreamwire.engine.schedule import predict_x0

    emb, g = _emb(prompt_encoder), _inputs(tiny_parts, rows=2, new_rows=2)
    g = GuidanceInputs(**{**g.__dict__, "timesteps": torch.tensor([359, 359]), "a": g.a[:1].expand(2, 1, 1, 1),
                          "b": g.b[:1].expand(2, 1, 1, 1)})
    _, ref = OnetimeNegative()(_plain(torch_backend), emb, g)
    neg = torch_backend.unet(g.x[1:], g.timesteps[1:], emb.negative.hidden)
    x0_neg = predict_x0(g.x[1:], neg, g.a[1:], g.b[1:], "epsilon")
    torch.testing.assert_close(ref[1:], x0_neg, rtol=1e-5, atol=5e-5)
    torch.testing.assert_close(ref[:1], g.z_new[:1] + (x0_neg - g.z_new[1:]), rtol=1e-5, atol=5e-5)


def test_onetime_reference_is_negative_prediction(make_engine):
    """Changing the negative prompt must change onetime output (it drives the virtual negative)."""
    base = {"t_index_list": (32, 45), "guidance_scale": 3.0}
    a = make_engine(Params({**base, "negative_prompt": "blurry"}), guidance="onetime")
    b = make_engine(Params({**base, "negative_prompt": "sharp"}), guidance="onetime")
    img = frames(1)[0]
    assert not torch.allclose(a.step(img).images, b.step(img).images)


def test_txt2img_rejects_rcfg():
    from dreamwire.engine.api import EngineConfig

    with pytest.raises(ValueError, match="needs an input image"):
        EngineConfig(mode="txt2img", guidance="self")


def test_timestep_grid_consistent():
    assert timestep_grid()[32] == 359
