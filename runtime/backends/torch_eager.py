"""Eager PyTorch backend: the reference every other backend is compared with."""

from __future__ import annotations

import torch

from dreamwire.backends.graphs import DecoderGraph, EncoderGraph, UNetGraph
from dreamwire.models.parts import ModelParts


class TorchBackend:
    name = "torch"

    def __init__(self, parts: ModelParts) -> None:
        self.parts = parts
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        self._unet = UNetGraph(parts.unet)
        self._encoder = EncoderGraph(parts.vae, parts.spec.vae_scaling_factor)
        self._decoder = DecoderGraph(parts.vae, parts.spec.vae_scaling_factor)

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
             ) -> torch.Tensor:
        return self._unet(sample, timestep, encoder_hidden_states)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._encoder(images.to(self.dtype))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._decoder(latents)
