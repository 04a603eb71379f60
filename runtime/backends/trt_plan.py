"""Pure shape logic for TensorRT engines: optimization profiles, binding plans, engine cache keys.

Nothing here imports TensorRT or needs a GPU, so all of it is unit-tested on
CPU; :mod:`dreamwire.backends.tensorrt` only turns these plans into API calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dreamwire.backends.cache import CacheKey
from dreamwire.backends.export import GRAPH_IO
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
    for name in GRAPH_IO[component].inputs:
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
    io = GRAPH_IO[component]
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


def engine_key(onnx_key: CacheKey, res: ResolutionProfile, batch: BatchProfile, *, trt_version: str, gpu: str,
               fp16: bool = True, workspace_gb: float | None = None) -> CacheKey:
    """The engine's key: its ONNX source's key plus everything the builder specialises on."""
    options = (("fp16", str(fp16)), ("workspace_gb", str(workspace_gb)))
    return dataclasses.replace(onnx_key, fmt="trt", resolution=res.label(), batch=batch.label(),
                               guidance=batch.guidance, trt_version=trt_version, gpu=gpu, options=options)
