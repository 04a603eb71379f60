"""The one narrow interface the engine needs from a backend (torch, compile, onnxruntime, tensorrt).

The engine only ever calls these three functions, so swapping a backend can
change speed but never the math; tests compare backends output for output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Backend(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype

    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
             residuals: tuple[torch.Tensor, ...] | None = None,
             added: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Noise/velocity prediction for a batch; ``timestep`` is one value per row.

        ``residuals``: summed ControlNet outputs (down..., mid) added inside the UNet; a backend built
        with ControlNets takes zeros for ``None``, so its UNet graph never changes.
        ``added``: SDXL's added conditioning (``text_embeds`` (B, pooled), ``time_ids`` (B, 6)), one row
        per sample, passed as diffusers' ``added_cond_kwargs``; required for SDXL, refused otherwise.
        The engine passes it only when the conditioning has it, so SD backends may omit the argument.
        """
        ...

    def controlnet(self, index: int, sample: torch.Tensor, timestep: torch.Tensor,
                   encoder_hidden_states: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """ControlNet ``index``'s residuals (down..., mid) at conditioning scale 1 for control images in [0, 1].

        Only called on backends built with ControlNets (``ModelParts.controlnets``).
        """
        ...

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) images in [-1, 1] -> latents already multiplied by the VAE scaling factor."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> (B,3,H,W) images in [-1, 1]."""
        ...
