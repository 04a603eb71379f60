"""The three networks as the Backend protocol sees them, as plain ``nn.Module`` wrappers.

One definition serves every backend: eager torch calls them, torch.compile
compiles them and the ONNX exporter traces them, so all backends compute the
same function by construction (encode/decode include the VAE scaling factor).
"""

from __future__ import annotations

from collections.abc import Mapping

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


class AddedUNetGraph(nn.Module):
    """SDXL's UNet: ``unet(sample, timestep, cond, text_embeds, time_ids, *residuals)``, all positional.

    The added conditioning (diffusers' ``added_cond_kwargs``) becomes two plain tensor inputs, so
    compile, CUDA graphs, ONNX and TensorRT see it like any other input; ControlNet residuals
    (down..., mid) follow when the backend has ControlNets.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                text_embeds: torch.Tensor, time_ids: torch.Tensor, *residuals: torch.Tensor) -> torch.Tensor:
        extra = {"down_block_additional_residuals": residuals[:-1],
                 "mid_block_additional_residual": residuals[-1]} if residuals else {}
        return self.unet(sample, timestep, encoder_hidden_states,
                         added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
                         return_dict=False, **extra)[0]


ADDED_INPUTS = ("text_embeds", "time_ids")  # AddedUNetGraph's extra inputs, in order


def added_args(added: Mapping[str, torch.Tensor] | None, sdxl: bool, batch: int, dtype: torch.dtype
               ) -> tuple[torch.Tensor, ...]:
    """SDXL's added conditioning as the graph's positional inputs (contiguous, one row per sample).

    A mismatch between model and conditioning is a bug upstream, so it raises instead of guessing.
    """
    if not sdxl:
        if added:
            raise ValueError("added conditioning given to a backend whose model is not SDXL")
        return ()
    if not added or set(added) != set(ADDED_INPUTS):
        raise ValueError(f"an SDXL UNet needs added conditioning {ADDED_INPUTS}, got {tuple(added or ())}")
    return tuple(added[k].to(dtype).expand(batch, *added[k].shape[1:]).contiguous() for k in ADDED_INPUTS)


def zero_residuals(unet_config: dict, sample: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """All-off ControlNet residuals for ``sample``: what a residual-input UNet gets when no ControlNet runs."""
    b, _, h, w = sample.shape
    return tuple(torch.zeros(s, device=sample.device, dtype=dtype) for s in residual_shapes(unet_config, b, h, w))


def unet_args(sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
              dtype: torch.dtype, sdxl: bool, unet_config: dict | None,
              residuals: tuple[torch.Tensor, ...] | None = None,
              added: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    """The positional inputs of every UNet graph, in the one order they all take.

    sample, timestep (per row, float32), cond, then SDXL's added conditioning (:data:`ADDED_INPUTS`),
    then ControlNet residuals (down..., mid) when the graph takes them, i.e. when ``unet_config``
    is given (zeros when none come, so toggling a ControlNet never swaps the graph). The order is
    :class:`AddedUNetGraph`'s and the exports' (:func:`dreamwire.backends.export_io.graph_io`).
    """
    b = sample.shape[0]
    args = (sample.to(dtype), row_timesteps(timestep, b, sample.device), encoder_hidden_states.to(dtype))
    args += added_args(added, sdxl, b, dtype)
    if unet_config is not None:
        args += tuple(r.to(dtype) for r in (residuals or zero_residuals(unet_config, sample, dtype)))
    elif residuals is not None:
        raise ValueError("ControlNet residuals given to a backend built without ControlNets")
    return args


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


def networks(unet: nn.Module, vae: nn.Module, scale: float, *, sdxl: bool = False) -> dict[str, nn.Module]:
    """The three graphs of a model, in eval mode, keyed as in :data:`NETWORKS` (SDXL: the added-input UNet)."""
    return {"unet": (AddedUNetGraph(unet) if sdxl else UNetGraph(unet)).eval(),
            "encoder": EncoderGraph(vae, scale).eval(),
            "decoder": DecoderGraph(vae, scale).eval()}


def row_timesteps(timestep: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The timestep as every graph takes it: float32, one contiguous value per row.

    Exact for every scheduler timestep (integers below 2**24), and diffusers casts
    it to float itself; a fixed dtype and shape is what lets a graph be captured once.
    """
    return timestep.to(device=device, dtype=torch.float32).reshape(-1).expand(batch).contiguous()


class ControlNetGraph(nn.Module):
    """``controlnet(sample, timestep, cond, image) -> (*down residuals, mid residual)`` at scale 1.

    The engine scales residuals per row afterwards, so one graph serves every live scale, on/off
    state and start/end window.
    """

    def __init__(self, controlnet: nn.Module) -> None:
        super().__init__()
        self.controlnet = controlnet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                controlnet_cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states, controlnet_cond=controlnet_cond,
                                    conditioning_scale=1.0, return_dict=False)
        return (*down, mid)


class ResidualUNetGraph(nn.Module):
    """The UNet taking ControlNet residuals as inputs: ``unet(sample, timestep, cond, *down, mid)``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                *residuals: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, down_block_additional_residuals=residuals[:-1],
                         mid_block_additional_residual=residuals[-1], return_dict=False)[0]


def residual_shapes(unet_config: dict, batch: int, height: int, width: int) -> list[tuple[int, ...]]:
    """Shapes of the residuals a ControlNet gives a UNet for (batch, latent height, latent width) samples.

    Down residuals: conv_in, each resnet of each down block, and each downsampler (stride-2 3x3 convs:
    ceil halving); then the mid block's. The ONNX graphs and the all-off zeros are sized from this.
    """
    ch = list(unet_config["block_out_channels"])
    lpb = unet_config["layers_per_block"]
    per_block = list(lpb) if isinstance(lpb, (list, tuple)) else [lpb] * len(ch)
    h, w = height, width
    shapes = [(batch, ch[0], h, w)]
    for i, c in enumerate(ch):
        shapes += [(batch, c, h, w)] * per_block[i]
        if i < len(ch) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((batch, c, h, w))
    shapes.append((batch, ch[-1], h, w))
    return shapes
