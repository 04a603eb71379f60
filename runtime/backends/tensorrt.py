"""TensorRT backend (10.1+ and 11.x): engines built from the cached ONNX exports, run on torch's current stream.

Engines are built once per (model, LoRAs, resolution profile, batch profile,
precision, TensorRT version, GPU) with one dynamic optimization profile (see
:mod:`dreamwire.backends.trt_plan`), so resolution or step-count changes inside
the profile reuse the same engine. Building is :mod:`dreamwire.backends.trt_build`
(strongly typed, mixed precision by ONNX types, timing cache, atomic files);
running is :mod:`dreamwire.backends.trt_run` (a context per shape, shared
scratch, CUDA graphs, never the legacy default stream).

``import tensorrt`` happens only when this backend is constructed or an
engine is built; a missing or broken install raises
:class:`BackendUnavailable` naming the pip extra.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dreamwire.backends.catalog import refuse_unsupported
from dreamwire.backends.cudagraph import GraphPool
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.export import check_size, control_components
from dreamwire.backends.export_io import CONTROLNET, RESIDUAL_UNET
from dreamwire.backends.graphs import row_timesteps, unet_args
from dreamwire.backends.profiles import MAX_STEPS, BatchProfile, ResolutionProfile
from dreamwire.backends.trt_build import EngineSpec, ensure_engines, import_tensorrt
from dreamwire.backends.trt_plan import profile_shapes
from dreamwire.backends.trt_run import EngineRunner
from dreamwire.engine.api import EngineConfig
from dreamwire.models.parts import ModelParts

__all__ = ["EngineSpec", "TensorRTBackend", "ensure_engines", "import_tensorrt"]


class TensorRTBackend:
    """Backend protocol over TensorRT engines: UNet, VAE encoder, VAE decoder, and one per ControlNet.

    With ControlNets the UNet engine is built from the residual-input export and always gets
    residuals (zeros when none are given), so toggling a ControlNet never changes an engine.
    """

    name = "tensorrt"

    def __init__(self, parts: ModelParts, config: EngineConfig | None = None, *,
                 profile: ResolutionProfile | None = None, steps: int = 2, max_steps: int = MAX_STEPS,
                 fp16: bool = True, workspace_gb: float | None = None, cuda_graph: bool = True) -> None:
        trt = import_tensorrt()
        config = config or EngineConfig()
        if parts.unet.device.type != "cuda":
            raise BackendUnavailable("backend 'tensorrt' needs the model on a CUDA device (--device cuda)")
        check_size(parts.spec, config.width, config.height)
        unet_config = dict(parts.unet.config)
        refuse_unsupported(self.name, parts)
        res = profile or ResolutionProfile.around(config.width, config.height)
        res.check(config.width, config.height)
        batch = BatchProfile(frames=config.frames, guidance=config.guidance, steps=min(steps, max_steps),
                             max_steps=max_steps)
        self.spec = EngineSpec(res, batch, fp16=fp16, workspace_gb=workspace_gb)
        self.max_steps = max_steps  # the batch profile's top: warm-up goes this far, a live change no further
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        plans = ensure_engines(parts, self.spec)
        self._pool = GraphPool(self.device)
        self._unet_config = unet_config
        self._unet = RESIDUAL_UNET if parts.controlnets else "unet"
        self._sdxl = parts.spec.family == "sdxl"
        self._run = {c: EngineRunner(trt, plans[c], c, parts.spec,
                                     profile_shapes(c, res, batch, parts.spec, unet_config), self.device,
                                     self._pool, cuda_graph=cuda_graph, unet_config=unet_config)
                     for c in control_components(parts)}
        # The engines never run at once (one pool, ordered), so one scratch block serves them all.
        scratch = torch.empty(max(r.memory_size for r in self._run.values()), dtype=torch.uint8, device=self.device)
        for runner in self._run.values():
            runner.scratch = scratch

    @property
    def captures(self) -> int:
        """CUDA-graph captures so far (engines are built before ready; nothing compiles later)."""
        return self._pool.captures

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
             residuals: tuple[torch.Tensor, ...] | None = None,
             added: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        args = unet_args(sample, timestep, encoder_hidden_states, dtype=self.dtype, sdxl=self._sdxl,
                         unet_config=self._unet_config if self._unet == RESIDUAL_UNET else None,
                         residuals=residuals, added=added)
        return self._run[self._unet](*args).to(self.dtype)

    @torch.inference_mode()
    def controlnet(self, index: int, sample: torch.Tensor, timestep: torch.Tensor,
                   encoder_hidden_states: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """ControlNet ``index``'s residuals (down..., mid) at conditioning scale 1; ``image`` in [0, 1]."""
        t = row_timesteps(timestep, sample.shape[0], self.device)
        out = self._run[f"{CONTROLNET}{index}"].run_all(sample, t, encoder_hidden_states, image)
        return tuple(r.to(self.dtype) for r in out)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._run["encoder"](images).to(self.dtype)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run["decoder"](latents).to(self.dtype)
