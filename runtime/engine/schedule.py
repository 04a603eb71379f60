"""Scheduler math as pure functions (LCM-style consistency steps).

Every function here is checked against ``diffusers.LCMScheduler`` in
``tests/test_schedule.py``. The engine precomputes :class:`StepConstants`
once per parameter set so a frame costs only tensor arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamwire.control.schema import T_INDEX_GRID
from dreamwire.engine.spec import PREDICTION_TYPES


def timestep_grid(num_train_timesteps: int = 1000, original_steps: int = T_INDEX_GRID) -> list[int]:
    """The discrete timesteps that ``t_index_list`` indexes, newest-noise first.

    This is LCM's schedule with ``set_timesteps(original_steps)``: with the SD
    defaults it is ``999 - 20 * index``.
    """
    k = num_train_timesteps // original_steps
    return [k * (original_steps - i) - 1 for i in range(original_steps)]


def boundary_scalings(
    timestep: torch.Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM boundary conditions (c_skip, c_out); c_skip -> 1 and c_out -> 0 only as t -> 0."""
    scaled = timestep.double() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2).sqrt()
    return c_skip, c_out


def alpha_beta(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) for each timestep."""
    ac = alphas_cumprod.double()[timesteps.long()]
    return ac.sqrt(), (1.0 - ac).sqrt()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Forward diffusion to the timestep whose constants are (a, b)."""
    return a * x0 + b * noise


def feedback_latent(z: torch.Tensor, previous: torch.Tensor, alpha: float) -> torch.Tensor:
    """Latent feedback: the new frame's latent pulled toward the last output's clean latent by ``alpha``.

    ``(1 - alpha) * z + alpha * previous``, row for row (``previous`` holds one clean latent per frame
    slot, as ``z`` does). Pulling each input toward what was just shown damps frame-to-frame flicker;
    callers skip it at ``alpha = 0`` so feedback off is bit-identical to no feedback at all.
    """
    return (1.0 - alpha) * z + alpha * previous


def predict_x0(
    x: torch.Tensor, model_output: torch.Tensor, a: torch.Tensor, b: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The model's estimate of the clean latent, whatever it was trained to predict."""
    if prediction_type == "epsilon":
        return (x - b * model_output) / a
    if prediction_type == "v_prediction":
        return a * x - b * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}")


def output_for_x0(
    x: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """Inverse of :func:`predict_x0`: the model output that would have predicted ``x0`` from ``x``.

    RCFG needs this to express its virtual negative in the model's own parameterisation.
    """
    if prediction_type == "epsilon":
        return (x - a * x0) / b
    if prediction_type == "v_prediction":
        eps = (x - a * x0) / b
        return a * eps - b * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}")


def lcm_denoise(
    x: torch.Tensor,
    model_output: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    c_skip: torch.Tensor,
    c_out: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """One consistency step: ``LCMScheduler.step(...).denoised`` for a whole batch at once."""
    return c_out * predict_x0(x, model_output, a, b, prediction_type) + c_skip * x


def strength_to_t_index(strength: float, steps: int, grid: int = T_INDEX_GRID) -> tuple[int, ...]:
    """Map a 0..1 strength onto ``steps`` ascending grid indices, exactly as diffusers' LCM img2img does.

    ``LCMScheduler.set_timesteps(steps, strength=s)`` keeps the noisiest
    ``L = int(grid * s)`` grid points and takes ``steps`` of them evenly,
    starting at the noisiest: index ``grid - L + floor(i * L / steps)``. So
    strength 1 starts from pure noise (t=999), lower strength starts later and
    spaces the steps closer. L is clamped to ``steps`` so low strengths still
    give distinct indices. The first index never increases with strength, so
    the mapping is monotonic.
    """
    if not 1 <= steps <= grid:
        raise ValueError(f"steps must be in 1..{grid}")
    s = min(max(float(strength), 0.0), 1.0)
    kept = max(int(grid * s), steps)
    return tuple(grid - kept + (i * kept) // steps for i in range(steps))


def t_index_for(strength: float, steps: int, t_index_list: tuple[int, ...], grid: int = T_INDEX_GRID
                ) -> tuple[int, ...]:
    """The t_index_list in force: the explicit list when given, else the strength/steps mapping."""
    if t_index_list:
        return tuple(t_index_list)
    return strength_to_t_index(strength, steps, grid)


@dataclass(frozen=True)
class StepConstants:
    """Per-batch-element constants for one t_index_list, laid out as the stream batch is.

    Element ``i * f + j`` is step ``i`` of frame slot ``j``; all tensors are
    shaped (n*f, 1, 1, 1) except ``timesteps`` (n*f,).
    """

    t_index: tuple[int, ...]
    frames: int
    timesteps: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    c_skip: torch.Tensor
    c_out: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.t_index)

    def slot(self, step: int) -> slice:
        """The batch rows that hold step ``step``."""
        return slice(step * self.frames, (step + 1) * self.frames)


def step_constants(
    alphas_cumprod: torch.Tensor,
    t_index: tuple[int, ...],
    frames: int,
    *,
    num_train_timesteps: int = 1000,
    original_steps: int = T_INDEX_GRID,
    timestep_scaling: float = 10.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StepConstants:
    grid = timestep_grid(num_train_timesteps, original_steps)
    for i in t_index:
        if not 0 <= i < len(grid):
            raise ValueError(f"t_index {i} outside 0..{len(grid) - 1}")
    t = torch.tensor([grid[i] for i in t_index], dtype=torch.long)
    a, b = alpha_beta(alphas_cumprod, t)
    c_skip, c_out = boundary_scalings(t, timestep_scaling=timestep_scaling)

    def lay(v: torch.Tensor) -> torch.Tensor:
        return v.repeat_interleave(frames).view(-1, 1, 1, 1).to(device=device, dtype=dtype)

    return StepConstants(
        t_index=tuple(t_index),
        frames=frames,
        timesteps=t.repeat_interleave(frames).to(device),
        a=lay(a),
        b=lay(b),
        c_skip=lay(c_skip),
        c_out=lay(c_out),
    )
