"""ONNX export of the three networks the engine runs: UNet, VAE encoder, VAE decoder.

The graphs take exactly the tensors the :class:`~dreamwire.backends.base.Backend`
protocol passes (encode/decode include the VAE scaling factor), so an ONNX or
TensorRT backend is a drop-in for the torch one. Batch, height and width are
dynamic axes: one export serves every resolution and step count of a profile.

The exporter is TorchScript tracing, chosen explicitly: torch's newer dynamo
exporter (the default from torch 2.9) needs ``onnxscript``, which is not a
dependency. ``torch.onnx.export`` only grew its ``dynamo`` argument in torch 2.4
(before that the TorchScript exporter was the only one), so the argument is
passed exactly when the installed torch has it (:func:`export_kwargs`); that
keeps the declared floor (``torch>=2.3`` in pyproject.toml) true for export.

Exports are traced in the dtype asked for: onnxruntime runs the model's own
dtype, TensorRT always starts from a float32 graph and chooses precision per
layer itself (:mod:`dreamwire.backends.onnx_precision`).
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dreamwire.backends.cache import CacheKey, ensure_entry, model_fingerprint
from dreamwire.backends.graphs import NETWORKS, networks
from dreamwire.engine.spec import ModelSpec
from dreamwire.models.parts import ModelParts

EXPORTER = "torchscript"
OPSET = 17
COMPONENTS = NETWORKS
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class GraphIO:
    """Tensor names of one exported graph, shared by the ONNX and TensorRT runners."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


GRAPH_IO: dict[str, GraphIO] = {
    "unet": GraphIO(
        inputs=("sample", "timestep", "encoder_hidden_states"),
        outputs=("model_output",),
        dynamic_axes={
            "sample": {0: "batch", 2: "latent_height", 3: "latent_width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch"},
            "model_output": {0: "batch", 2: "latent_height", 3: "latent_width"},
        },
    ),
    "unet_sdxl": GraphIO(  # SDXL: the added conditioning as two more inputs, batched per row
        inputs=("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"),
        outputs=("model_output",),
        dynamic_axes={
            "sample": {0: "batch", 2: "latent_height", 3: "latent_width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch"},
            "text_embeds": {0: "batch"},
            "time_ids": {0: "batch"},
            "model_output": {0: "batch", 2: "latent_height", 3: "latent_width"},
        },
    ),
    "encoder": GraphIO(
        inputs=("images",),
        outputs=("latents",),
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                      "latents": {0: "batch", 2: "latent_height", 3: "latent_width"}},
    ),
    "decoder": GraphIO(
        inputs=("latents",),
        outputs=("images",),
        dynamic_axes={"latents": {0: "batch", 2: "latent_height", 3: "latent_width"},
                      "images": {0: "batch", 2: "height", 3: "width"}},
    ),
}


def graph_io(component: str, spec: ModelSpec) -> GraphIO:
    """The tensor names of ``component``'s graph for this model (SDXL's UNet has two more inputs)."""
    if component == "unet" and spec.family == "sdxl":
        return GRAPH_IO["unet_sdxl"]
    return GRAPH_IO[component]


def check_size(spec: ModelSpec, width: int, height: int) -> None:
    """Traced graphs fix diffusers' "odd size" upsampling branch at export time, so sizes off the model's
    grid would fail inside the graph; say so here instead."""
    align = spec.size_alignment
    if width % align or height % align:
        raise ValueError(f"{width}x{height}: exported graphs of this model need sides that are multiples of "
                         f"{align} px; pick another resolution or use --backend torch")


def _in_dtype(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module`` itself, or a copy in ``dtype`` (an fp32 export of an fp16 model: upcasting weights is exact)."""
    return module if module.dtype == dtype else copy.deepcopy(module).to(dtype)


def graph_and_inputs(parts: ModelParts, component: str, *, batch: int = 2, height: int = 512, width: int = 512,
                     dtype: torch.dtype | None = None) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The wrapper module and example inputs (on the parts' device, in ``dtype``) for one component."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
    dev, dt, spec = parts.unet.device, dtype or parts.unet.dtype, parts.spec
    sdxl = spec.family == "sdxl"
    if component == "unet":  # copy only the network being exported
        module = networks(_in_dtype(parts.unet, dt), parts.vae, spec.vae_scaling_factor, sdxl=sdxl)[component]
    else:
        module = networks(parts.unet, _in_dtype(parts.vae, dt), spec.vae_scaling_factor, sdxl=sdxl)[component]
    s = spec.vae_scale_factor
    lat = (batch, spec.latent_channels, height // s, width // s)
    if component == "unet":
        added = tuple(torch.randn(shape, device=dev, dtype=dt) * (height if name == "time_ids" else 1)
                      for name, shape in spec.added_shapes(batch).items())
        return module, (torch.randn(lat, device=dev, dtype=dt),
                        torch.full((batch,), 500.0, device=dev, dtype=torch.float32),
                        torch.randn(batch, spec.text_tokens, spec.text_dim, device=dev, dtype=dt), *added)
    if component == "encoder":
        return module, (torch.rand(batch, 3, height, width, device=dev, dtype=dt) * 2 - 1,)
    return module, (torch.randn(lat, device=dev, dtype=dt),)


def export_kwargs(export: Callable) -> dict:
    """Keyword arguments selecting the TorchScript exporter on this torch: ``dynamo=False`` where it exists."""
    params = inspect.signature(export).parameters
    return {"dynamo": False} if "dynamo" in params else {}


def export_onnx(parts: ModelParts, component: str, path: Path, *, batch: int = 2, height: int = 512,
                width: int = 512, dtype: torch.dtype | None = None) -> Path:
    """Trace one component to ``path`` with dynamic batch/height/width axes (TorchScript exporter, opset 17)."""
    check_size(parts.spec, width, height)
    module, args = graph_and_inputs(parts, component, batch=batch, height=height, width=width, dtype=dtype)
    io = graph_io(component, parts.spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python-side shape checks and that the legacy exporter is deprecated;
        # both are expected here (the exported shapes are verified by tests at several sizes).
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            module, args, str(path), **export_kwargs(torch.onnx.export), opset_version=OPSET,
            input_names=list(io.inputs), output_names=list(io.outputs), dynamic_axes=io.dynamic_axes,
            do_constant_folding=True,
        )
    return path


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def onnx_key(parts: ModelParts, component: str, *, model_hash: str | None = None,
             loras: tuple[tuple[str, float], ...] | None = None, dtype: torch.dtype | None = None) -> CacheKey:
    """Cache key of one exported graph: model, weights, LoRAs, dtype, exporter and opset.

    The VAE components hash the TAESD source too when one replaced the VAE.
    """
    h = model_hash or parts.fingerprint or model_fingerprint(parts.source)
    if component != "unet" and parts.taesd:
        h = f"{h}+taesd:{parts.taesd}@{model_fingerprint(parts.taesd)}"
    if loras is None:
        loras = parts.loras
    return CacheKey(component=component, model_id=parts.source, model_hash=h, loras=tuple(loras),
                    dtype=f"{_dtype_name(dtype or parts.unet.dtype)}@{parts.unet.device.type}", exporter=EXPORTER,
                    opset=OPSET, fmt="onnx")


def cached_onnx(parts: ModelParts, component: str, *, height: int = 512, width: int = 512,
                key: CacheKey | None = None, root: Path | None = None, dtype: torch.dtype | None = None) -> Path:
    """Path of the component's ONNX file (traced in ``dtype``, default the model's), exported on first use."""
    key = key or onnx_key(parts, component, dtype=dtype)

    def build(folder: Path) -> None:
        export_onnx(parts, component, folder / ONNX_FILE, height=height, width=width, dtype=dtype)

    return ensure_entry(key, build, root) / ONNX_FILE
