"""Eager PyTorch backend: the reference every other backend is compared with, optionally as CUDA graphs.

``cuda_graphs=True`` (the ``torch+graphs`` backend) replays each of the three
networks as per-shape CUDA graphs (:mod:`dreamwire.backends.cudagraph`). That
removes the launch overhead that dominates small batches on a fast GPU and
needs neither Inductor nor Triton, so it is the fast path where Triton does
not exist (Windows, pytorch/pytorch#136361).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from dreamwire.backends.cudagraph import CudaGraphRunner, GraphPool
from dreamwire.backends.graphs import (
    ControlNetGraph,
    ResidualUNetGraph,
    networks,
    row_timesteps,
    unet_args,
    zero_residuals,
)
from dreamwire.models.parts import ModelParts


class TorchBackend:
    """The three networks of ``parts`` run by torch; subclasses change how each is prepared (compiled)."""

    name = "torch"
    graphs_name = "torch+graphs"  # the name when it replays CUDA graphs

    def __init__(self, parts: ModelParts, *, cuda_graphs: bool = False) -> None:
        self.parts = parts
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        self.cuda_graphs = cuda_graphs
        if cuda_graphs:
            self.name = self.graphs_name
        self._pool = GraphPool(self.device) if cuda_graphs else None
        self._fns: dict[str, Callable[..., torch.Tensor]] = {}
        self._sdxl = parts.spec.family == "sdxl"
        for key, module in networks(parts.unet, parts.vae, parts.spec.vae_scaling_factor, sdxl=self._sdxl).items():
            fn = self._prepare(module)
            self._fns[key] = CudaGraphRunner(fn, self._pool) if self._pool is not None else fn
        # With ControlNets the UNet always takes residuals (zeros when all are off), so toggling one
        # never swaps the UNet graph.
        extra = {f"controlnet{k}": ControlNetGraph(net).eval() for k, net in enumerate(parts.controlnets)}
        if parts.controlnets and not self._sdxl:  # the SDXL UNet graph takes residuals as trailing inputs
            extra["unet"] = ResidualUNetGraph(parts.unet).eval()
        for key, module in extra.items():
            fn = self._prepare(module)
            self._fns[key] = CudaGraphRunner(fn, self._pool) if self._pool is not None else fn
        self._unet_config = dict(parts.unet.config)
        self._residual_config = self._unet_config if parts.controlnets else None  # the UNet takes residuals

    def _prepare(self, module: nn.Module) -> Callable[..., torch.Tensor]:
        return module

    @property
    def captures(self) -> int:
        """CUDA-graph captures so far (the warm-up policy checks none happen after ready)."""
        return self._pool.captures if self._pool is not None else 0

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
             residuals: tuple[torch.Tensor, ...] | None = None,
             added: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self._fns["unet"](*unet_args(sample, timestep, encoder_hidden_states, dtype=self.dtype,
                                            sdxl=self._sdxl, unet_config=self._residual_config,
                                            residuals=residuals, added=added))

    def zero_residuals(self, sample: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return zero_residuals(self._unet_config, sample, self.dtype)

    @torch.inference_mode()
    def controlnet(self, index: int, sample: torch.Tensor, timestep: torch.Tensor,
                   encoder_hidden_states: torch.Tensor, image: torch.Tensor, *,
                   added: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
        """ControlNet ``index``'s residuals (down..., mid) at conditioning scale 1; ``image`` in [0, 1].

        ``added``: SDXL's added conditioning (``added_cond_kwargs``), passed to the module as is.
        """
        t = row_timesteps(timestep, sample.shape[0], self.device)
        if added:
            down, mid = self.parts.controlnets[index](
                sample.to(self.dtype), t, encoder_hidden_states.to(self.dtype), controlnet_cond=image.to(self.dtype),
                conditioning_scale=1.0, added_cond_kwargs=dict(added), return_dict=False)
            return (*down, mid)
        return self._fns[f"controlnet{index}"](sample.to(self.dtype), t, encoder_hidden_states.to(self.dtype),
                                              image.to(self.dtype))

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._fns["encoder"](images.to(self.dtype))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._fns["decoder"](latents.to(self.dtype))
