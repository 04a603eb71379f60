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
from pathlib import Path

import torch
from torch import nn

from dreamwire.backends.cache import CacheKey, ensure_entry, model_fingerprint
from dreamwire.backends.export_io import CONTROLNET, GRAPH_IO, RESIDUAL_UNET, GraphIO, controlnet_index, graph_io, kind
from dreamwire.backends.graphs import NETWORKS, ControlNetGraph, ResidualUNetGraph, networks, residual_shapes
from dreamwire.engine.spec import ModelSpec
from dreamwire.models.parts import ModelParts

EXPORTER = "torchscript"
OPSET = 17
COMPONENTS = NETWORKS
ONNX_FILE = "model.onnx"

__all__ = ["COMPONENTS", "GRAPH_IO", "GraphIO", "cached_onnx", "check_size", "component_io", "control_components",
           "export_onnx", "graph_and_inputs", "onnx_key"]


def control_components(parts: ModelParts) -> tuple[str, ...]:
    """The graphs a model with ControlNets runs: the residual-input UNet, the VAE and one graph per ControlNet.

    Without ControlNets it is :data:`COMPONENTS`. With them the plain UNet is not exported at all: the
    residual UNet takes zeros when every ControlNet is off, so toggling never swaps a graph.
    """
    if not parts.controlnets:
        return COMPONENTS
    return (RESIDUAL_UNET, *(c for c in COMPONENTS if c != "unet"),
            *(f"{CONTROLNET}{k}" for k in range(len(parts.controlnets))))


def residual_count(parts: ModelParts) -> int:
    """How many residual tensors (down..., mid) a ControlNet gives this model's UNet."""
    return len(residual_shapes(dict(parts.unet.config), 1, 8, 8))


def component_io(parts: ModelParts, component: str) -> GraphIO:
    """The I/O names of one of ``parts``' graphs (the ControlNet graphs depend on the UNet's residual count)."""
    count = residual_count(parts) if kind(component) in (CONTROLNET, RESIDUAL_UNET) else 0
    return graph_io(component, count, sdxl=parts.spec.family == "sdxl")


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


def _module(parts: ModelParts, component: str, dt: torch.dtype) -> nn.Module:
    """The wrapper module of one component, copying only the network being exported into ``dt``."""
    k, scale = kind(component), parts.spec.vae_scaling_factor
    if k == CONTROLNET:
        return ControlNetGraph(_in_dtype(parts.controlnets[controlnet_index(component)], dt)).eval()
    if k == RESIDUAL_UNET:
        return ResidualUNetGraph(_in_dtype(parts.unet, dt)).eval()
    sdxl = parts.spec.family == "sdxl"
    if k == "unet":
        return networks(_in_dtype(parts.unet, dt), parts.vae, scale, sdxl=sdxl)[k]
    return networks(parts.unet, _in_dtype(parts.vae, dt), scale, sdxl=sdxl)[k]


def graph_and_inputs(parts: ModelParts, component: str, *, batch: int = 2, height: int = 512, width: int = 512,
                     dtype: torch.dtype | None = None) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The wrapper module and example inputs (on the parts' device, in ``dtype``) for one component."""
    if component not in control_components(parts) and component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {control_components(parts)}")
    dev, dt, spec = parts.unet.device, dtype or parts.unet.dtype, parts.spec
    module, k = _module(parts, component, dt), kind(component)
    s = spec.vae_scale_factor
    lat = (batch, spec.latent_channels, height // s, width // s)
    if k in ("unet", CONTROLNET, RESIDUAL_UNET):
        args = (torch.randn(lat, device=dev, dtype=dt),
                torch.full((batch,), 500.0, device=dev, dtype=torch.float32),
                torch.randn(batch, spec.text_tokens, spec.text_dim, device=dev, dtype=dt))
        if k == CONTROLNET:
            args += (torch.rand(batch, 3, height, width, device=dev, dtype=dt),)
        if k == "unet":  # SDXL's text_embeds, time_ids (none for SD)
            args += tuple(torch.randn(shape, device=dev, dtype=dt) * (height if name == "time_ids" else 1)
                          for name, shape in spec.added_shapes(batch).items())
        if k == RESIDUAL_UNET:
            args += tuple(torch.randn(r, device=dev, dtype=dt)
                          for r in residual_shapes(dict(parts.unet.config), *lat[:1], *lat[2:]))
        return module, args
    if k == "encoder":
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
    io = component_io(parts, component)
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


def controlnet_fingerprint(parts: ModelParts, index: int) -> tuple[str, str]:
    """(source, weights hash) of ControlNet ``index``: its export's identity, whatever the UNet."""
    from dreamwire.models.controlnet import TINY, ensure_tiny_controlnet

    if index >= len(parts.controlnet_sources):
        raise ValueError(f"ControlNet {index} has no recorded source (ModelParts.controlnet_sources) to key "
                         f"its export on")
    source = parts.controlnet_sources[index]
    return source, model_fingerprint(str(ensure_tiny_controlnet()) if source == TINY else source)


def onnx_key(parts: ModelParts, component: str, *, model_hash: str | None = None,
             loras: tuple[tuple[str, float], ...] | None = None, dtype: torch.dtype | None = None) -> CacheKey:
    """Cache key of one exported graph: model, weights, LoRAs, dtype, exporter and opset.

    The VAE components hash the TAESD source too when one replaced the VAE. A ControlNet graph is
    keyed on that ControlNet's own source and weights (component ``controlnet`` whatever its index,
    so the same ControlNet is exported once for every model and position it is used in).
    """
    dtype_label = f"{_dtype_name(dtype or parts.unet.dtype)}@{parts.unet.device.type}"
    if kind(component) == CONTROLNET:
        source, h = controlnet_fingerprint(parts, controlnet_index(component))
        return CacheKey(component=CONTROLNET, model_id=source, model_hash=h, dtype=dtype_label,
                        exporter=EXPORTER, opset=OPSET, fmt="onnx")
    h = model_hash or parts.fingerprint or model_fingerprint(parts.source)
    if component not in ("unet", RESIDUAL_UNET) and parts.taesd:
        h = f"{h}+taesd:{parts.taesd}@{model_fingerprint(parts.taesd)}"
    if loras is None:
        loras = parts.loras
    return CacheKey(component=component, model_id=parts.source, model_hash=h, loras=tuple(loras),
                    dtype=dtype_label, exporter=EXPORTER, opset=OPSET, fmt="onnx")


def cached_onnx(parts: ModelParts, component: str, *, height: int = 512, width: int = 512,
                key: CacheKey | None = None, root: Path | None = None, dtype: torch.dtype | None = None) -> Path:
    """Path of the component's ONNX file (traced in ``dtype``, default the model's), exported on first use."""
    key = key or onnx_key(parts, component, dtype=dtype)

    def build(folder: Path) -> None:
        export_onnx(parts, component, folder / ONNX_FILE, height=height, width=width, dtype=dtype)

    return ensure_entry(key, build, root) / ONNX_FILE
