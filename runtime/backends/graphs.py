"""The three networks as the Backend protocol sees them, as plain ``nn.Module`` wrappers.

One definition serves every backend: eager torch calls them, torch.compile
compiles them and the ONNX exporter traces them, so all backends compute the
same function by construction (encode/decode include the VAE scaling factor).
"""

from __future__ import annotations

import torch
from torch import nn

NETWORKS = ("unet", "encoder", "decoder")


def encode_latents(vae: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Unscaled latents of ``images`` for either VAE kind diffusers ships."""
    out = vae.encode(images)
    if hasattr(out, "latents"):  # AutoencoderTiny
        return out.latents
    return out.latent_dist.mode()  # AutoencoderKL: the mean is deterministic, so frames don't shimmer


class UNetGraph(nn.Module):
    """``unet(sample, timestep, cond)`` with a float32 per-row timestep (TensorRT dislikes int64 I/O)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
                ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class EncoderGraph(nn.Module):
    """Images in [-1, 1] -> scaled latents, the same math as ``TorchBackend.encode``."""

    def __init__(self, vae: nn.Module, scale: float) -> None:
        super().__init__()
        self.vae, self.scale = vae, scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return encode_latents(self.vae, images) * self.scale


class DecoderGraph(nn.Module):
    """Scaled latents -> images in [-1, 1], the same math as ``TorchBackend.decode``."""

    def __init__(self, vae: nn.Module, scale: float) -> None:
        super().__init__()
        self.vae, self.scale = vae, scale

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scale, return_dict=False)[0]


def networks(unet: nn.Module, vae: nn.Module, scale: float) -> dict[str, nn.Module]:
    """The three graphs of a model, in eval mode, keyed as in :data:`NETWORKS`."""
    return {"unet": UNetGraph(unet).eval(), "encoder": EncoderGraph(vae, scale).eval(),
            "decoder": DecoderGraph(vae, scale).eval()}


def row_timesteps(timestep: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The timestep as every graph takes it: float32, one contiguous value per row.

    Exact for every scheduler timestep (integers below 2**24), and diffusers casts
    it to float itself; a fixed dtype and shape is what lets a graph be captured once.
    """
    return timestep.to(device=device, dtype=torch.float32).reshape(-1).expand(batch).contiguous()
