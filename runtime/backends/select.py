"""Backend choice: the one place ``--backend`` names become objects.

``auto`` picks the fastest backend that can run here: tensorrt (importable and
a CUDA device); else on CUDA ``compile`` where Triton imports (Inductor's GPU
code generator) and ``torch+graphs`` (eager torch replayed as CUDA graphs, no
Inductor) where it does not, as on Windows; else onnxruntime when installed,
else torch. A backend asked for by name that cannot run raises
:class:`BackendUnavailable` naming the pip extra, never falls back silently.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.api import Backend, EngineConfig
from dreamwire.models.parts import ModelParts

BACKENDS = ("torch", "compile", "onnxruntime", "tensorrt", "torch+graphs")
log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendUnavailable", "default_backend", "make_backend"]


def _importable(module: str) -> str | None:
    """``None`` when ``import module`` works, else why not (a wheel without its native libs raises OSError)."""
    try:
        __import__(module)  # the import statement's hook, so tests can hide a module (tests/conftest.py)
    except (ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def tensorrt_importable() -> bool:
    return _importable("tensorrt") is None


def triton_missing() -> str | None:
    """Why Triton cannot be imported (``None`` when it can): Inductor needs it for CUDA kernels."""
    return _importable("triton")


def onnxruntime_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def cuda_torch_backend() -> str:
    """``compile`` where Inductor can generate CUDA code, else eager torch as CUDA graphs (and why)."""
    why = triton_missing()
    if why is None:
        return "compile"
    log.warning("backend auto: Triton cannot be imported (%s), so torch.compile/Inductor cannot build CUDA "
                "kernels here (there is no Triton for Windows); using torch+graphs (eager torch replayed as "
                "CUDA graphs)", why)
    return "torch+graphs"


def default_backend(device: torch.device | str = "cpu") -> str:
    """The ``auto`` choice for a model living on ``device``."""
    if torch.device(device).type == "cuda":
        return "tensorrt" if tensorrt_importable() else cuda_torch_backend()
    return "onnxruntime" if onnxruntime_installed() else "torch"


def _auto(parts: ModelParts, config: EngineConfig) -> str:
    """``default_backend``, except that exported graphs are skipped for sizes they cannot trace."""
    name = default_backend(parts.unet.device)
    if name in ("onnxruntime", "tensorrt"):
        align = parts.spec.size_alignment
        if config.width % align or config.height % align:
            fallback = cuda_torch_backend() if parts.unet.device.type == "cuda" else "torch"
            log.warning("backend auto: %dx%d is not a multiple of %d px, which exported graphs need; using %s",
                        config.width, config.height, align, fallback)
            return fallback
    return name


NO_SDXL_CONTROLNET = ("onnxruntime", "tensorrt")
"""Backends whose exports have no SDXL ControlNet graph yet (SD 1.5/2.1 ControlNets run on every backend)."""


def _sdxl_controlnets(parts: ModelParts) -> bool:
    return bool(parts.controlnets) and dict(parts.unet.config).get("addition_embed_type") == "text_time"


def make_backend(name: str, parts: ModelParts, config: EngineConfig | None = None, **options) -> Backend:
    """Build backend ``name`` for ``parts``; ``options`` go to that backend's constructor.

    ``config`` fixes the resolution and batch the exported graphs and engines
    are built for (resolution/batch *profiles* around it, so live changes of
    steps, and resolution changes inside the profile, need no rebuild).
    """
    config = config or EngineConfig()
    if name == "auto":
        name = _auto(parts, config)
        if name in NO_SDXL_CONTROLNET and _sdxl_controlnets(parts):
            name = cuda_torch_backend() if parts.unet.device.type == "cuda" else "torch"
    if name in ("torch", "torch+graphs"):
        from dreamwire.backends.torch_eager import TorchBackend

        if name == "torch+graphs":
            if parts.unet.device.type != "cuda":
                raise BackendUnavailable("backend 'torch+graphs' replays CUDA graphs: it needs --device cuda")
            options.setdefault("cuda_graphs", True)
        return TorchBackend(parts, **options)
    if name == "compile":
        from dreamwire.backends.compiled import CompiledBackend

        return CompiledBackend(parts, **options)
    if name == "onnxruntime":
        from dreamwire.backends.onnxrt import OnnxRuntimeBackend

        return OnnxRuntimeBackend(parts, width=config.width, height=config.height, **options)
    if name == "tensorrt":
        from dreamwire.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(parts, config, **options)
    raise ValueError(f"unknown backend {name!r}; expected one of: auto, {', '.join(BACKENDS)}")
