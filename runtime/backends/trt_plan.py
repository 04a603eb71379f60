"""Pure shape logic for TensorRT engines: optimization profiles, binding plans, engine cache keys.

Nothing here imports TensorRT or needs a GPU, so all of it is unit-tested on
CPU; :mod:`dreamwire.backends.tensorrt` only turns these plans into API calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dreamwire.backends.cache import CacheKey
from dreamwire.backends.export import graph_io
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


def _input_shape(component: str, name: str, batch: int, height: int, width: int, d: ModelSpec) -> Shape:
    h, w = height // d.vae_scale_factor, width // d.vae_scale_factor
    table: dict[tuple[str, str], Shape] = {
        ("unet", "sample"): (batch, d.latent_channels, h, w),
        ("unet", "timestep"): (batch,),
        ("unet", "encoder_hidden_states"): (batch, d.text_tokens, d.text_dim),
        **{("unet", k): v for k, v in d.added_shapes(batch).items()},  # SDXL: text_embeds, time_ids
        ("encoder", "images"): (batch, 3, height, width),
        ("decoder", "latents"): (batch, d.latent_channels, h, w),
    }
    return table[(component, name)]


def component_batches(component: str, batch: BatchProfile) -> tuple[int, int, int]:
    """(min, opt, max) batch: the UNet's spans priming to max steps; the VAE always sees ``frames``."""
    if component == "unet":
        return batch.minimum, batch.opt, batch.maximum
    return 1, batch.frames, batch.frames


def profile_shapes(component: str, res: ResolutionProfile, batch: BatchProfile, dims: ModelSpec) -> ProfileShapes:
    """The optimization profile of one component: the smallest, typical and largest call it must take."""
    b_lo, b_opt, b_hi = component_batches(component, batch)
    out = {}
    for name in graph_io(component, dims).inputs:
        out[name] = (
            _input_shape(component, name, b_lo, res.minimum, res.minimum, dims),
            _input_shape(component, name, b_opt, res.opt, res.opt, dims),
            _input_shape(component, name, b_hi, res.maximum, res.maximum, dims),
        )
    return ProfileShapes(out)


def output_shape(component: str, first_input: Shape, dims: ModelSpec) -> Shape:
    """The output shape implied by the first input's shape (what the I/O buffer must hold)."""
    b, _, h, w = first_input
    if component == "unet":
        return (b, dims.out_channels, h, w)
    if component == "encoder":
        return (b, dims.latent_channels, h // dims.vae_scale_factor, w // dims.vae_scale_factor)
    return (b, 3, h * dims.vae_scale_factor, w * dims.vae_scale_factor)


@dataclass(frozen=True)
class BindingPlan:
    """Every I/O tensor of one call: (name, shape) for inputs then outputs. Hashable: one buffer set each."""

    component: str
    inputs: tuple[tuple[str, Shape], ...]
    outputs: tuple[tuple[str, Shape], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.inputs + self.outputs)


def binding_plan(component: str, input_shapes: tuple[Shape, ...], dims: ModelSpec,
                 profile: ProfileShapes | None = None) -> BindingPlan:
    """Bind the call's inputs by name; raise with the fix if a shape is outside the engine's profile."""
    io = graph_io(component, dims)
    if len(input_shapes) != len(io.inputs):
        raise ValueError(f"{component} takes {len(io.inputs)} inputs {io.inputs}, got {len(input_shapes)}")
    inputs = tuple(zip(io.inputs, (tuple(s) for s in input_shapes)))
    if profile is not None:
        for name, shape in inputs:
            if not profile.contains(name, shape):
                lo, _, hi = profile.shapes[name]
                raise ValueError(
                    f"{component} input {name} of shape {shape} is outside the engine profile {lo}..{hi}: "
                    f"rebuild the engines (dreamwire build-engines) for this resolution/steps/frames")
    outputs = ((io.outputs[0], output_shape(component, inputs[0][1], dims)),)
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
