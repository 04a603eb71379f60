"""The table of backends: every fact about each ``--backend`` name, written once.

``auto`` (:mod:`dreamwire.backends.select`), the failsafe's fallback chain
(:mod:`dreamwire.backends.assemble`) and the exported backends' own refusals all read
these rows, so adding a backend or teaching one SDXL ControlNets is one edit here.
Nothing is imported to read the table: ``cls`` is an import path, loaded only
when that backend is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dreamwire.backends.errors import BackendUnavailable

if TYPE_CHECKING:  # annotations only: the CLI reads the table without importing torch
    from dreamwire.models.parts import ModelParts


@dataclass(frozen=True)
class BackendInfo:
    """One backend: how to build it, where it runs, what it can run, and what replaces it when it fails.

    ``auto_on``: the device types on which ``auto`` considers it, in table order (compile is not worth
    its minutes of Inductor on a CPU; onnxruntime on CUDA needs the separate onnxruntime-gpu).
    ``exported``: it runs traced graphs, so the size must sit on the model's size grid.
    ``takes``: what the constructor wants besides the parts (the options, the size, or the whole config).
    """

    name: str
    cls: str
    needs_cuda: bool
    sdxl_controlnet: bool
    residual_inputs: bool
    exported: bool
    fallback: str | None
    auto_on: tuple[str, ...] = ()
    takes: Literal["options", "size", "config"] = "options"
    extra: str | None = None  # the pip extra that installs it

    def load(self) -> type:
        module, _, attr = self.cls.partition(":")
        return getattr(importlib.import_module(module), attr)


_ROWS = (
    # auto's order: the first row that can run here wins
    BackendInfo("tensorrt", "dreamwire.backends.tensorrt:TensorRTBackend", needs_cuda=True, sdxl_controlnet=False,
                residual_inputs=True, exported=True, fallback="compile", auto_on=("cuda",), takes="config",
                extra="tensorrt"),
    # on CUDA without Triton, compile becomes torch+graphs (select.cuda_torch_backend), for auto and fallback alike
    BackendInfo("compile", "dreamwire.backends.compiled:CompiledBackend", needs_cuda=False, sdxl_controlnet=True,
                residual_inputs=True, exported=False, fallback="torch", auto_on=("cuda",)),
    BackendInfo("onnxruntime", "dreamwire.backends.onnxrt:OnnxRuntimeBackend", needs_cuda=False,
                sdxl_controlnet=False, residual_inputs=True, exported=True, fallback="torch", auto_on=("cpu",),
                takes="size", extra="onnx"),
    BackendInfo("torch", "dreamwire.backends.torch_eager:TorchBackend", needs_cuda=False, sdxl_controlnet=True,
                residual_inputs=True, exported=False, fallback=None, auto_on=("cpu", "cuda")),
    BackendInfo("torch+graphs", "dreamwire.backends.torch_eager:TorchBackend", needs_cuda=True,
                sdxl_controlnet=True, residual_inputs=True, exported=False, fallback="torch"),
)

TABLE: dict[str, BackendInfo] = {row.name: row for row in _ROWS}
NAMES: tuple[str, ...] = ("torch", "compile", "onnxruntime", "tensorrt", "torch+graphs")  # the order help lists


def info(name: str) -> BackendInfo:
    """The row of ``name``; ValueError listing the names for anything else."""
    try:
        return TABLE[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; expected one of: auto, {', '.join(NAMES)}") from None


def unsupported(name: str, parts: ModelParts) -> str | None:
    """Why backend ``name`` cannot run ``parts`` (``None`` when it can), from its row alone."""
    row = info(name)
    if parts.controlnets and not row.residual_inputs:
        return f"backend {name!r} cannot feed ControlNet residuals to its UNet"
    if parts.controlnets and parts.spec.family == "sdxl" and not row.sdxl_controlnet:
        able = ", ".join(r.name for r in _ROWS if r.sdxl_controlnet)
        return f"backend {name!r} does not export SDXL ControlNets yet; use --backend {able}"
    return None


def refuse_unsupported(name: str, parts: ModelParts) -> None:
    """Raise :class:`BackendUnavailable` when ``unsupported`` has a reason: never a silent substitute."""
    why = unsupported(name, parts)
    if why is not None:
        raise BackendUnavailable(why)
