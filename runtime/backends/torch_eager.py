"""Eager PyTorch backend: the reference every other backend is compared with."""

from __future__ import annotations

import torch

from runtime.models import ModelParts


def _encode_latents(vae, images: torch.Tensor) -> torch.Tensor:
    out = vae.encode(images)
    if hasattr(out, "latents"):  # AutoencoderTiny
        return out.latents
    return out.latent_dist.mode()  # AutoencoderKL: the mean is deterministic, so frames don't shimmer


class TorchBackend:
    name = "torch"

    def __init__(self, parts: ModelParts) -> None:
        self.parts = parts
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        self._scale = parts.vae_scaling_factor

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
             ) -> torch.Tensor:
        return self.parts.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return _encode_latents(self.parts.vae, images.to(self.dtype)) * self._scale

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.parts.vae.decode(latents / self._scale, return_dict=False)[0]
