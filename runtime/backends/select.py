"""Backend choice: the one place ``--backend`` names become objects.

``auto`` picks the fastest backend that can run here: tensorrt (importable and
a CUDA device), else compile on CUDA, else onnxruntime when installed, else
torch. A backend asked for by name that cannot run raises
:class:`BackendUnavailable` naming the pip extra, never falls back silently.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.backend import Backend
from dreamwire.engine.config import EngineConfig
from dreamwire.models.parts import ModelParts

BACKENDS = ("torch", "compile", "onnxruntime", "tensorrt")
log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendUnavailable", "default_backend", "make_backend"]


def tensorrt_importable() -> bool:
    """True when ``import tensorrt`` works (a wheel without its native libs raises OSError/ImportError)."""
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def onnxruntime_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def default_backend(device: torch.device | str = "cpu") -> str:
    """The ``auto`` choice for a model living on ``device``."""
    if torch.device(device).type == "cuda":
        return "tensorrt" if tensorrt_importable() else "compile"
    return "onnxruntime" if onnxruntime_installed() else "torch"


def _auto(parts: ModelParts, config: EngineConfig) -> str:
    """``default_backend``, except that exported graphs are skipped for sizes they cannot trace."""
    name = default_backend(parts.unet.device)
    if name in ("onnxruntime", "tensorrt"):
        align = parts.spec.size_alignment
        if config.width % align or config.height % align:
            fallback = "compile" if parts.unet.device.type == "cuda" else "torch"
            log.warning("backend auto: %dx%d is not a multiple of %d px, which exported graphs need; using %s",
                        config.width, config.height, align, fallback)
            return fallback
    return name


def make_backend(name: str, parts: ModelParts, config: EngineConfig | None = None, **options) -> Backend:
    """Build backend ``name`` for ``parts``; ``options`` go to that backend's constructor.

    ``config`` fixes the resolution and batch the exported graphs and engines
    are built for (resolution/batch *profiles* around it, so live changes of
    steps, and resolution changes inside the profile, need no rebuild).
    """
    config = config or EngineConfig()
    if name == "auto":
        name = _auto(parts, config)
    if name == "torch":
        from dreamwire.backends.torch_eager import TorchBackend

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
