"""Pure shape logic for TensorRT engines: optimization profiles, binding plans, engine cache keys.

Nothing here imports TensorRT or needs a GPU, so all of it is unit-tested on
CPU; :mod:`dreamwire.backends.tensorrt` only turns these plans into API calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dreamwire.backends.cache import CacheKey
from dreamwire.backends.export_io import CONTROLNET, RESIDUAL_UNET, graph_io, kind
from dreamwire.backends.graphs import residual_shapes
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.engine.spec import ModelSpec

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ProfileShapes:
    """min/opt/max shape of every input of one engine (one TensorRT optimization profile)."""

    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def contains(self, name: str, shape: Shape) -> bool:
        lo, _, hi = self.shapes[name]
        return len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi))


UNET_KINDS = ("unet", RESIDUAL_UNET, CONTROLNET)  # run on the UNet's rows, so they share its batch range


def _residual_count(component: str, unet_config: dict | None) -> int:
    if kind(component) not in (CONTROLNET, RESIDUAL_UNET):
        return 0
    if unet_config is None:
        raise ValueError(f"{component}: the UNet config is needed for the residual shapes")
    return len(residual_shapes(unet_config, 1, 8, 8))


def input_shapes(component: str, batch: int, height: int, width: int, d: ModelSpec,
                 unet_config: dict | None = None) -> dict[str, Shape]:
    """Every input of ``component`` for a call of ``batch`` rows at ``height`` x ``width`` pixels, by name.

    ControlNet residuals (inputs of the residual UNet) follow the UNet's down blocks
    (:func:`~dreamwire.backends.graphs.residual_shapes`), so ``unet_config`` is needed for them.
    """
    h, w = height // d.vae_scale_factor, width // d.vae_scale_factor
    k = kind(component)
    if k == "encoder":
        return {"images": (batch, 3, height, width)}
    if k == "decoder":
        return {"latents": (batch, d.latent_channels, h, w)}
    out: dict[str, Shape] = {"sample": (batch, d.latent_channels, h, w), "timestep": (batch,),
                             "encoder_hidden_states": (batch, d.text_tokens, d.text_dim)}
    if k == "unet":
        out.update(d.added_shapes(batch))  # SDXL: text_embeds, time_ids
    if k == CONTROLNET:
        out["controlnet_cond"] = (batch, 3, height, width)
    if k == RESIDUAL_UNET:
        names = graph_io(component, _residual_count(component, unet_config)).inputs[3:]
        out.update(zip(names, residual_shapes(unet_config or {}, batch, h, w)))
    return out


def component_batches(component: str, batch: BatchProfile) -> tuple[int, int, int]:
    """(min, opt, max) batch: the UNet's (and ControlNets') spans priming to max steps; the VAE sees ``frames``."""
    if kind(component) in UNET_KINDS:
        return batch.minimum, batch.opt, batch.maximum
    return 1, batch.frames, batch.frames


def profile_shapes(component: str, res: ResolutionProfile, batch: BatchProfile, dims: ModelSpec,
                   unet_config: dict | None = None) -> ProfileShapes:
    """The optimization profile of one component: the smallest, typical and largest call it must take."""
    b_lo, b_opt, b_hi = component_batches(component, batch)
    lo, opt, hi = (input_shapes(component, b, r, r, dims, unet_config)
                   for b, r in ((b_lo, res.minimum), (b_opt, res.opt), (b_hi, res.maximum)))
    return ProfileShapes({name: (lo[name], opt[name], hi[name]) for name in lo})


def output_shapes(component: str, first_input: Shape, dims: ModelSpec, unet_config: dict | None = None
                  ) -> tuple[Shape, ...]:
    """The output shapes implied by the first input's shape (what the I/O buffers must hold)."""
    b, _, h, w = first_input
    k = kind(component)
    if k in ("unet", RESIDUAL_UNET):
        return ((b, dims.out_channels, h, w),)
    if k == CONTROLNET:
        _residual_count(component, unet_config)
        return tuple(residual_shapes(unet_config or {}, b, h, w))
    if k == "encoder":
        return ((b, dims.latent_channels, h // dims.vae_scale_factor, w // dims.vae_scale_factor),)
    return ((b, 3, h * dims.vae_scale_factor, w * dims.vae_scale_factor),)


def output_shape(component: str, first_input: Shape, dims: ModelSpec) -> Shape:
    """The single output shape of a UNet/VAE graph (see :func:`output_shapes` for the ControlNet's)."""
    return output_shapes(component, first_input, dims)[0]


@dataclass(frozen=True)
class BindingPlan:
    """Every I/O tensor of one call: (name, shape) for inputs then outputs. Hashable: one buffer set each."""

    component: str
    inputs: tuple[tuple[str, Shape], ...]
    outputs: tuple[tuple[str, Shape], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.inputs + self.outputs)


def binding_plan(component: str, shapes: tuple[Shape, ...], dims: ModelSpec,
                 profile: ProfileShapes | None = None, unet_config: dict | None = None) -> BindingPlan:
    """Bind the call's inputs by name; raise with the fix if a shape is outside the engine's profile."""
    io = graph_io(component, _residual_count(component, unet_config), sdxl=dims.family == "sdxl")
    if len(shapes) != len(io.inputs):
        raise ValueError(f"{component} takes {len(io.inputs)} inputs {io.inputs}, got {len(shapes)}")
    inputs = tuple(zip(io.inputs, (tuple(s) for s in shapes)))
    if profile is not None:
        for name, shape in inputs:
            if not profile.contains(name, shape):
                lo, _, hi = profile.shapes[name]
                raise ValueError(
                    f"{component} input {name} of shape {shape} is outside the engine profile {lo}..{hi}: "
                    f"rebuild the engines (dreamwire build-engines) for this resolution/steps/frames")
    outputs = tuple(zip(io.outputs, output_shapes(component, inputs[0][1], dims, unet_config), strict=True))
    return BindingPlan(component, inputs, outputs)


PRECISION_PASS = 1  # bump when onnx_precision changes which layers stay float32
WORKSPACE_FRACTION = 0.75  # of free VRAM: the builder also holds weights and tactic buffers outside the pool
MIN_WORKSPACE = 256 << 20


def precision_label(fp16: bool) -> str:
    """What the engine's ONNX types say: fp16 with norms/softmax/timestep in float32, or float32 throughout."""
    return f"fp16-mixed-v{PRECISION_PASS}" if fp16 else "fp32"


def engine_key(onnx_key: CacheKey, res: ResolutionProfile, batch: BatchProfile, *, trt_version: str, gpu: str,
               fp16: bool = True, workspace_gb: float | None = None) -> CacheKey:
    """The engine's key: its float32 ONNX source's key plus everything the builder specialises on."""
    options = (("precision", precision_label(fp16)), ("typing", "strong"), ("workspace_gb", str(workspace_gb)))
    return dataclasses.replace(onnx_key, fmt="trt", resolution=res.label(), batch=batch.label(),
                               guidance=batch.guidance, trt_version=trt_version, gpu=gpu, options=options)


def timing_cache_key(trt_version: str, gpu: str) -> dict[str, str]:
    """What a timing cache is valid for: tactic timings depend on the TensorRT build and the GPU only, so
    one cache (keyed with the engines' own ``trt_version`` and ``gpu`` fields) serves every engine built there."""
    return {"kind": "timing-cache", "trt_version": trt_version, "gpu": gpu}


def workspace_bytes(free_bytes: int, workspace_gb: float | None = None) -> int:
    """The builder's workspace pool: what the user asked for, else a share of the VRAM free right now.

    TensorRT's default limit is the whole device, so a build next to a loaded
    model (or another process) can exhaust memory; see ``MemoryPoolType.WORKSPACE``
    (TensorRT NvInfer.h, IBuilderConfig::setMemoryPoolLimit).
    """
    if workspace_gb:
        return int(workspace_gb * (1 << 30))
    return max(MIN_WORKSPACE, int(free_bytes * WORKSPACE_FRACTION))
