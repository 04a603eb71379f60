"""Guidance strategies: none, full CFG, RCFG self-negative and RCFG onetime-negative.

Each strategy is one small class chosen once at engine construction, so the
mode is never re-tested per frame. The arithmetic is in the pure functions
:func:`cfg` and :func:`rcfg`, tested against the textbook CFG formula.

RCFG (StreamDiffusion, arXiv 2312.12491) replaces the unconditional UNet pass
by a *virtual negative*: the model output that would point from the current
latent back to a reference clean latent. ``self`` uses the frame's own input
latent as the reference; ``onetime`` runs the negative prompt once, at the
frame's first step, and uses that x0 prediction for all later steps.

On ``delta``: the original code scales the virtual noise itself by delta, so
delta=0 turns guidance into ``scale * eps_c`` (an exposure shift rather than
"no guidance"). Here delta blends the negative between the virtual one
(delta=1, the paper's formula) and the conditional output (delta=0, no
guidance), which keeps every value of delta a proper CFG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from dreamwire.engine.api import GUIDANCE_MODES
from dreamwire.engine.conditioning import Conditioning
from dreamwire.engine.schedule import output_for_x0, predict_x0

UNetCall = Callable[[torch.Tensor, torch.Tensor, Conditioning, torch.Tensor], torch.Tensor]
"""``unet(x, timesteps, cond, rows)``: ``rows`` (long) names, for each UNet row, the latent row of the
call it belongs to, so the engine can attach per-frame inputs (ControlNet images) to CFG's extra rows."""


def cfg(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)``."""
    return uncond + scale * (cond - uncond)


def rcfg(cond: torch.Tensor, virtual_negative: torch.Tensor, scale: float, delta: float) -> torch.Tensor:
    """Residual CFG with the negative blended between the virtual one and ``cond`` by ``delta``."""
    return cfg(delta * virtual_negative + (1.0 - delta) * cond, cond, scale)


@dataclass(frozen=True)
class Embeddings:
    """The prompt's and the negative prompt's conditioning, each for one row."""

    cond: Conditioning
    negative: Conditioning


@dataclass(frozen=True)
class GuidanceInputs:
    """Everything one guided UNet evaluation needs, for a batch of ``rows`` latents.

    The first ``new_rows`` rows are new frames at their first step; the rest are
    in-flight. ``z_new`` is the new frames' input latent (``None`` in txt2img)
    and ``ref_inflight`` the RCFG reference latents of the in-flight rows.
    """

    x: torch.Tensor
    timesteps: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    new_rows: int
    z_new: torch.Tensor | None
    ref_inflight: torch.Tensor | None
    scale: float
    delta: float
    prediction_type: str


def _rows(emb: Conditioning, n: int) -> Conditioning:
    return emb.rows(n)


def _ids(g: GuidanceInputs, *parts: torch.Tensor | slice) -> torch.Tensor:
    """The latent-row indices of a UNet batch made of ``parts`` (slices of, or indices into, ``g.x``)."""
    every = torch.arange(len(g.x), device=g.x.device)
    return torch.cat([every[p] for p in parts])


class _Strategy:
    """Defaults: one UNet row per latent row, nothing derived from the negative prompt between calls."""

    name = ""
    needs_input_latent = False

    def negative_changed(self) -> None:
        """Called when the negative prompt changes; only strategies that cache something from it care."""

    def batch_size(self, rows: int, new_rows: int) -> int:
        """UNet rows for a call on ``rows`` latent rows, ``new_rows`` of them new frames."""
        return rows


class NoGuidance(_Strategy):
    name = "none"

    def __call__(self, unet: UNetCall, emb: Embeddings, g: GuidanceInputs) -> tuple[torch.Tensor, None]:
        return unet(g.x, g.timesteps, _rows(emb.cond, len(g.x)), _ids(g, slice(None))), None


class FullGuidance(_Strategy):
    """True CFG: a second, negative-prompt pass on every row (2x the UNet batch)."""

    name = "full"

    def batch_size(self, rows: int, new_rows: int) -> int:
        return 2 * rows

    def __call__(self, unet: UNetCall, emb: Embeddings, g: GuidanceInputs) -> tuple[torch.Tensor, None]:
        n = len(g.x)
        out = unet(
            torch.cat([g.x, g.x]),
            torch.cat([g.timesteps, g.timesteps]),
            Conditioning.cat([_rows(emb.negative, n), _rows(emb.cond, n)]),
            _ids(g, slice(None), slice(None)),
        )
        uncond, cond = out.chunk(2)
        return cfg(uncond, cond, g.scale), None


def _with_reference(
    cond: torch.Tensor, ref_new: torch.Tensor, g: GuidanceInputs
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [ref_new] if g.new_rows else []
    if g.ref_inflight is not None and len(g.ref_inflight):
        parts.append(g.ref_inflight)
    ref = torch.cat(parts)
    virtual = output_for_x0(g.x, ref, g.a, g.b, g.prediction_type)
    return rcfg(cond, virtual, g.scale, g.delta), ref


class SelfNegative(_Strategy):
    """RCFG self-negative: the reference is each frame's own input latent; one pass."""

    name = "self"
    needs_input_latent = True

    def __call__(self, unet: UNetCall, emb: Embeddings, g: GuidanceInputs) -> tuple[torch.Tensor, torch.Tensor]:
        cond = unet(g.x, g.timesteps, _rows(emb.cond, len(g.x)), _ids(g, slice(None)))
        ref_new = g.z_new[: g.new_rows] if g.new_rows else g.x[:0]
        return _with_reference(cond, ref_new, g)


class OnetimeNegative(_Strategy):
    """RCFG onetime-negative: one extra row runs the negative prompt on the newest frame at step 0.

    Its x0 prediction becomes the reference for every later step of that
    frame, so the batch is n*f + 1. With several new frames per call (f > 1)
    the other new frames take the same *negative direction* applied to their
    own input latent, ``z_j + (x0_neg - z_newest)``, which is exact for f = 1
    and costs no extra rows. After a negative-prompt change the next call runs
    the negative on *every* row (2*n*f rows, once), so in-flight frames pick up
    the new negative at once instead of n-1 frames later.
    """

    name = "onetime"
    needs_input_latent = True

    def __init__(self) -> None:
        self._refresh = False

    def negative_changed(self) -> None:
        self._refresh = True

    def batch_size(self, rows: int, new_rows: int) -> int:
        return rows + (1 if new_rows else 0)

    def __call__(self, unet: UNetCall, emb: Embeddings, g: GuidanceInputs) -> tuple[torch.Tensor, torch.Tensor]:
        if self._refresh:
            return self._refresh_all(unet, emb, g)
        n, k = len(g.x), g.new_rows
        neg = slice(k - 1, k) if k else slice(0, 0)  # the newest new frame (the last one of the call)
        out = unet(
            torch.cat([g.x, g.x[neg]]),
            torch.cat([g.timesteps, g.timesteps[neg]]),
            Conditioning.cat([_rows(emb.cond, n), _rows(emb.negative, 1 if k else 0)]),
            _ids(g, slice(None), neg),
        )
        cond = out[:n]
        if k:
            x0_neg = predict_x0(g.x[neg], out[n:], g.a[neg], g.b[neg], g.prediction_type)
            ref_new = g.z_new[:k] + (x0_neg - g.z_new[neg])
        else:
            ref_new = g.x[:0]
        return _with_reference(cond, ref_new, g)

    def _refresh_all(self, unet: UNetCall, emb: Embeddings, g: GuidanceInputs) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(g.x)
        out = unet(torch.cat([g.x, g.x]), torch.cat([g.timesteps, g.timesteps]),
                   Conditioning.cat([_rows(emb.cond, n), _rows(emb.negative, n)]), _ids(g, slice(None), slice(None)))
        self._refresh = False  # only once the refreshing call went through; a failed one retries next frame
        ref = predict_x0(g.x, out[n:], g.a, g.b, g.prediction_type)
        return _with_reference(out[:n], ref, replace(g, new_rows=n, ref_inflight=None))


def make_guidance(mode: str) -> NoGuidance | FullGuidance | SelfNegative | OnetimeNegative:
    """The one place a mode name becomes behaviour."""
    table = {"none": NoGuidance, "full": FullGuidance, "self": SelfNegative, "onetime": OnetimeNegative}
    if mode not in table:
        raise ValueError(f"unknown guidance mode {mode!r}; expected one of {', '.join(GUIDANCE_MODES)}")
    return table[mode]()
