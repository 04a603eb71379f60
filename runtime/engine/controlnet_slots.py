"""The control images of the frames in flight, and the UNet call that adds their ControlNet residuals.

Control images are made once per frame, when it enters the stream (preprocessed from the input
frame, or passed in by the caller from a second source), and then travel with that frame's
in-flight slot exactly as its latent does. So every row of a stream-batch call is conditioned on
its own frame's control image, and a frame that entered before a control-source change finishes
with the image it entered with, as it would in a sequential pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dreamwire.control.params import Params
from dreamwire.engine.api import Backend
from dreamwire.engine.conditioning import Conditioning
from dreamwire.engine.controlnet import ControlNetSetup, check_lengths, live_values, row_scales
from dreamwire.engine.guidance import UNetCall
from dreamwire.engine.preprocess import make_preprocessor

CONTROLNET_LISTS = ("controlnet_scale", "controlnet_enabled", "controlnet_start", "controlnet_end")


class ControlNetSlots:
    """Per ControlNet: the control images of the in-flight step slots (newest first) and of the last output."""

    def __init__(self, setups: Sequence[ControlNetSetup], shape: tuple[int, int, int, int],
                 device: torch.device, dtype: torch.dtype) -> None:
        self.setups = tuple(setups)
        self.shape, self.device, self.dtype = shape, device, dtype
        self._preprocess = [make_preprocessor(s.preprocessor) for s in self.setups]
        self.inflight: list[torch.Tensor] = []
        self._last: list[torch.Tensor] = []

    def __bool__(self) -> bool:
        return bool(self.setups)

    def check(self, params: Params) -> str | None:
        """A message when a live control list does not hold one value per loaded ControlNet."""
        return check_lengths(len(self.setups), {k: getattr(params, k) for k in CONTROLNET_LISTS})

    def new(self, images: torch.Tensor | None, control: Sequence[torch.Tensor | None] | None) -> list[torch.Tensor]:
        """Each ControlNet's control images for the new frames: given, or preprocessed from ``images``."""
        if not self.setups:
            return []
        given = list(control) if control is not None else [None] * len(self.setups)
        if len(given) != len(self.setups):
            raise ValueError(f"expected {len(self.setups)} control images, got {len(given)}")
        out = []
        for prep, im in zip(self._preprocess, given):
            if im is None:
                if images is None:
                    raise ValueError("ControlNets need control images (or input frames to preprocess) in txt2img")
                im = prep(images)
            if tuple(im.shape) != self.shape:
                raise ValueError(f"expected control images of shape {self.shape}, got {tuple(im.shape)}")
            out.append(im.to(device=self.device, dtype=self.dtype))
        return out

    def reset(self) -> None:
        self.inflight, self._last = [], []

    def prime(self, new: Sequence[torch.Tensor], slots: int) -> None:
        """The primed slots all hold the first frame, so they hold its control image."""
        self.inflight = [im.repeat(slots, 1, 1, 1) for im in new]

    def refill(self, slots: int) -> None:
        """New slots filled from the last output (depth grew from 1): they take its control image."""
        self.inflight = [im.repeat(slots, 1, 1, 1) for im in self._last]

    def select(self, rows: torch.Tensor) -> None:
        """Keep the slots a depth change keeps, in the same order as the latents."""
        self.inflight = [im.index_select(0, rows) for im in self.inflight]

    def batch(self, new: Sequence[torch.Tensor], frames: int) -> list[torch.Tensor]:
        """The control images of a stream-batch call's rows (new frames first); then the slots move one on."""
        rows = [torch.cat([n, old]) for n, old in zip(new, self.inflight)]
        self.inflight = [im[:-frames] for im in rows]
        self._last = [im[-frames:] for im in rows]
        return rows


def controlled_unet(backend: Backend, setups: Sequence[ControlNetSetup], params: Params,
                    images: Sequence[torch.Tensor], rows: slice, frames: int, steps: int) -> UNetCall:
    """The strategies' UNet call with ControlNet residuals: every ControlNet once, on the same rows.

    ``rows`` are the call's latent rows in the step constants' layout, so row r is at step
    ``r // frames``; its scale is scale x enabled x keep(step), applied as one (B,1,1,1) factor on
    that ControlNet's residuals. A ControlNet that is off for every row is not run, and the UNet is
    still called the same way, so toggling never changes a graph.
    """
    row_steps = [r // frames for r in range(rows.start or 0, rows.stop)]
    values = live_values(setups, params.controlnet_scale, params.controlnet_enabled, params.controlnet_start,
                         params.controlnet_end)
    host = [row_scales(v, row_steps, steps) for v in values]
    scales = [torch.tensor(h, device=backend.device, dtype=backend.dtype) for h in host]

    def call(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, ids: torch.Tensor) -> torch.Tensor:
        total: list[torch.Tensor] | None = None
        added: dict[str, Any] = {"added": cond.added} if cond.added else {}
        for k, (im, scale, h) in enumerate(zip(images, scales, host)):
            if not any(h):
                continue
            res = backend.controlnet(k, x, t, cond.hidden, im.index_select(0, ids), **added)
            w = scale.index_select(0, ids).view(-1, 1, 1, 1)
            scaled = [r * w for r in res]
            total = scaled if total is None else [a + b for a, b in zip(total, scaled)]
        return backend.unet(x, t, cond.hidden, residuals=tuple(total) if total else None, **added)

    return call
