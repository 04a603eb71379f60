"""Backend choice: the one place ``--backend`` names become objects.

``auto`` walks the backend table (:mod:`dreamwire.backends.catalog`) and takes
the first row that can run here: tensorrt (importable and a CUDA device); else
on CUDA ``compile`` where Triton imports (Inductor's GPU code generator) and
``torch+graphs`` (eager torch replayed as CUDA graphs, no Inductor) where it
does not, as on Windows; else onnxruntime when installed, else torch. A row is
passed over when its libraries are missing, when it cannot run the model (SDXL
ControlNets on the exported backends), or when the size is off the exported
graphs' grid; one log line says what was chosen and why. A backend asked for
by name that cannot run raises :class:`BackendUnavailable` naming the fix,
never falls back silently.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from dreamwire.backends.catalog import NAMES, TABLE, info, refuse_unsupported, unsupported
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.api import Backend, EngineConfig
from dreamwire.models.parts import ModelParts

BACKENDS = NAMES
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


def _missing(name: str) -> str | None:
    """Why backend ``name``'s libraries are not here (``None`` when they are, or it needs none)."""
    if name == "tensorrt" and not tensorrt_importable():
        return "tensorrt is not importable"
    if name == "onnxruntime" and not onnxruntime_installed():
        return "onnx/onnxruntime are not installed"
    return None


def runnable_name(name: str, device_type: str) -> str:
    """``name`` as it runs on ``device_type``: compile on CUDA becomes torch+graphs where Triton is missing."""
    return cuda_torch_backend() if name == "compile" and device_type == "cuda" else name


def choose(device: torch.device | str, parts: ModelParts | None = None, config: EngineConfig | None = None
           ) -> tuple[str, list[tuple[str, str, bool]]]:
    """The ``auto`` choice for ``device`` (and, given them, for these parts at this size), with each row
    passed over before it: (name, why, whether only its libraries were missing)."""
    dev = torch.device(device).type
    skipped = []
    for row in TABLE.values():
        if dev not in row.auto_on:
            continue
        why = _missing(row.name)
        if why is not None:
            skipped.append((row.name, why, True))
            continue
        why = unsupported(row.name, parts) if parts is not None else None
        if why is None and row.exported and config is not None and parts is not None:
            align = parts.spec.size_alignment
            if config.width % align or config.height % align:
                why = f"{config.width}x{config.height} is not a multiple of {align} px, which exported graphs need"
        if why is None:
            return runnable_name(row.name, dev), skipped
        skipped.append((row.name, why, False))
    raise RuntimeError(f"the backend table has no auto row for {dev}")  # torch's row runs everywhere


def default_backend(device: torch.device | str = "cpu") -> str:
    """The ``auto`` choice for a model living on ``device``."""
    return choose(device)[0]


def _auto(parts: ModelParts, config: EngineConfig) -> str:
    """``auto`` for these parts, explained in one log line (a warning when the model or size ruled one out)."""
    name, skipped = choose(parts.unet.device, parts, config)
    why = "; ".join(f"not {n}: {w}" for n, w, _ in skipped) or "the first in the table that runs here"
    by_model = any(not missing for _, _, missing in skipped)  # the user's model or size ruled a faster one out
    log.log(logging.WARNING if by_model else logging.INFO, "backend auto: %s on %s (%s)", name,
            parts.unet.device, why)
    return name


def fallback_of(name: str) -> str | None:
    """The next backend down when ``name`` fails live (its table row), as it runs on that device."""
    row = info(name)
    if row.fallback is None:
        return None
    return runnable_name(row.fallback, "cuda" if row.needs_cuda else "cpu")


def make_backend(name: str, parts: ModelParts, config: EngineConfig | None = None, **options) -> Backend:
    """Build backend ``name`` for ``parts``; ``options`` go to that backend's constructor.

    ``config`` fixes the resolution and batch the exported graphs and engines
    are built for (resolution/batch *profiles* around it, so live changes of
    steps, and resolution changes inside the profile, need no rebuild).
    """
    config = config or EngineConfig()
    if name == "auto":
        name = _auto(parts, config)
    row = info(name)
    if row.needs_cuda and parts.unet.device.type != "cuda" and _missing(name) is None:  # missing: say what to install
        raise BackendUnavailable(f"backend {name!r} runs on CUDA only: it needs --device cuda")
    refuse_unsupported(name, parts)
    if name == "torch+graphs":
        options.setdefault("cuda_graphs", True)
    cls = row.load()
    if row.takes == "size":
        return cls(parts, width=config.width, height=config.height, **options)
    if row.takes == "config":
        return cls(parts, config, **options)
    return cls(parts, **options)
