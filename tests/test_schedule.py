"""The scheduler math against diffusers' LCMScheduler, the reference implementation."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import LCMScheduler

from dreamwire.engine.schedule import (
    add_noise,
    alpha_beta,
    boundary_scalings,
    lcm_denoise,
    output_for_x0,
    predict_x0,
    step_constants,
    strength_to_t_index,
    timestep_grid,
)

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def test_timestep_grid_matches_lcm_set_timesteps():
    s = LCMScheduler(**SD_BETAS)
    s.set_timesteps(50)
    assert timestep_grid() == s.timesteps.tolist()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("t_index", [0, 18, 32, 45, 49])
def test_denoise_equals_lcm_scheduler_step(prediction_type, t_index):
    s = LCMScheduler(**SD_BETAS, prediction_type=prediction_type)
    s.set_timesteps(50)
    t = s.timesteps[t_index]
    g = torch.Generator().manual_seed(t_index)
    x = torch.randn(2, 4, 8, 8, generator=g)
    out = torch.randn(2, 4, 8, 8, generator=g)
    ref = s.step(out, t, x, generator=g, return_dict=True).denoised

    a, b = alpha_beta(s.alphas_cumprod, t.view(1))
    c_skip, c_out = boundary_scalings(t.view(1))
    mine = lcm_denoise(x, out, a.float(), b.float(), c_skip.float(), c_out.float(), prediction_type)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)


def test_boundary_scalings_match_diffusers():
    s = LCMScheduler(**SD_BETAS)
    for t in [999, 359, 99, 19, 0]:
        ref_skip, ref_out = s.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        c_skip, c_out = boundary_scalings(torch.tensor(t))
        assert float(c_skip) == pytest.approx(float(ref_skip), rel=1e-6)
        assert float(c_out) == pytest.approx(float(ref_out), rel=1e-6)


def test_add_noise_matches_diffusers():
    s = LCMScheduler(**SD_BETAS)
    t = torch.tensor([999, 359, 99])
    x0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    a, b = alpha_beta(s.alphas_cumprod, t)
    mine = add_noise(x0, noise, a.float().view(-1, 1, 1, 1), b.float().view(-1, 1, 1, 1))
    torch.testing.assert_close(mine, s.add_noise(x0, noise, t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_output_for_x0_inverts_predict_x0(prediction_type):
    a, b = torch.tensor(0.6), torch.tensor(0.8)
    x, x0 = torch.randn(4, 4), torch.randn(4, 4)
    out = output_for_x0(x, x0, a, b, prediction_type)
    torch.testing.assert_close(predict_x0(x, out, a, b, prediction_type), x0, rtol=1e-5, atol=1e-5)


def test_unknown_prediction_type_is_an_error():
    with pytest.raises(ValueError, match="prediction_type"):
        predict_x0(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1), "flow")


def test_step_constants_interleave_frames():
    s = LCMScheduler(**SD_BETAS)
    c = step_constants(s.alphas_cumprod, (32, 45), frames=2)
    assert c.timesteps.tolist() == [359, 359, 99, 99]
    assert c.a.shape == (4, 1, 1, 1)
    assert c.slot(1) == slice(2, 4)
    with pytest.raises(ValueError):
        step_constants(s.alphas_cumprod, (50,), frames=1)


def test_strength_mapping_is_monotonic_and_valid():
    for steps in range(1, 9):
        prev = None
        for k in range(101):
            idx = strength_to_t_index(k / 100, steps)
            assert len(idx) == steps
            assert all(b > a for a, b in itertools.pairwise(idx)), idx
            assert 0 <= idx[0] and idx[-1] <= 49
            if prev is not None:
                assert idx[0] <= prev[0]  # more strength -> start at least as noisy
            prev = idx
    assert strength_to_t_index(1.0, 1) == (0,)
    assert strength_to_t_index(0.0, 2) == (48, 49)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8])
def test_strength_mapping_equals_diffusers_lcm_img2img(steps):
    s = LCMScheduler(**SD_BETAS)
    grid = timestep_grid()
    for k in range(101):
        strength = k / 100
        if int(50 * strength) < steps:
            continue  # diffusers refuses these; we clamp instead (tested above)
        s.set_timesteps(steps, strength=strength)
        expected = tuple(grid.index(t) for t in s.timesteps.tolist())
        assert strength_to_t_index(strength, steps) == expected, strength
