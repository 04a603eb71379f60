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

from dreamwire.backends.cudagraph import GraphPool
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.export import COMPONENTS, check_size
from dreamwire.backends.graphs import added_args, row_timesteps
from dreamwire.backends.profiles import MAX_STEPS, BatchProfile, ResolutionProfile
from dreamwire.backends.trt_build import EngineSpec, ensure_engines, import_tensorrt
from dreamwire.backends.trt_plan import profile_shapes
from dreamwire.backends.trt_run import EngineRunner
from dreamwire.engine.config import EngineConfig
from dreamwire.models.parts import ModelParts

__all__ = ["EngineSpec", "TensorRTBackend", "ensure_engines", "import_tensorrt"]


class TensorRTBackend:
    """Backend protocol over three TensorRT engines (UNet, VAE encoder, VAE decoder)."""

    name = "tensorrt"

    def __init__(self, parts: ModelParts, config: EngineConfig | None = None, *,
                 profile: ResolutionProfile | None = None, steps: int = 2, max_steps: int = MAX_STEPS,
                 fp16: bool = True, workspace_gb: float | None = None, cuda_graph: bool = True) -> None:
        trt = import_tensorrt()
        config = config or EngineConfig()
        if parts.unet.device.type != "cuda":
            raise BackendUnavailable("backend 'tensorrt' needs the model on a CUDA device (--device cuda)")
        check_size(parts.spec, config.width, config.height)
        res = profile or ResolutionProfile.around(config.width, config.height)
        res.check(config.width, config.height)
        batch = BatchProfile(frames=config.frames, guidance=config.guidance, steps=min(steps, max_steps),
                             max_steps=max_steps)
        self.spec = EngineSpec(res, batch, fp16=fp16, workspace_gb=workspace_gb)
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        self._sdxl = parts.spec.family == "sdxl"
        plans = ensure_engines(parts, self.spec)
        self._pool = GraphPool(self.device)
        self._run = {c: EngineRunner(trt, plans[c], c, parts.spec, profile_shapes(c, res, batch, parts.spec),
                                     self.device, self._pool, cuda_graph=cuda_graph) for c in COMPONENTS}
        # The three engines never run at once (one pool, ordered), so one scratch block serves them all.
        scratch = torch.empty(max(r.memory_size for r in self._run.values()), dtype=torch.uint8, device=self.device)
        for runner in self._run.values():
            runner.scratch = scratch

    @property
    def captures(self) -> int:
        """CUDA-graph captures so far (engines are built before ready; nothing compiles later)."""
        return self._pool.captures

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
             added: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """SDXL's ``added`` go in as the engine's ``text_embeds`` / ``time_ids`` inputs (see ``unet_sdxl``)."""
        t = row_timesteps(timestep, sample.shape[0], self.device)
        extra = added_args(added, self._sdxl, sample.shape[0], self.dtype)
        return self._run["unet"](sample, t, encoder_hidden_states, *extra).to(self.dtype)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._run["encoder"](images).to(self.dtype)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run["decoder"](latents).to(self.dtype)
