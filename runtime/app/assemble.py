"""Builds a ready :class:`StreamEngine` from names (model, backend) and configs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.select import cuda_torch_backend, make_backend
from dreamwire.control.params import Params
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.prompts import PromptEncoder
from dreamwire.engine.stream import StreamEngine
from dreamwire.models.load import load_model
from dreamwire.models.lora import DEFAULT_LCM_LORA
from dreamwire.models.parts import ModelParts

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_engine(model: str = "tiny", **options: Any) -> StreamEngine:
    return build(model, **options)[0]


def build(
    model: str = "tiny",
    *,
    backend: str = "auto",
    config: EngineConfig | None = None,
    params: Params | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    taesd: str | None = None,
    lcm_lora: str | None = DEFAULT_LCM_LORA,
    loras: tuple[tuple[str, float], ...] = (),
    backend_options: dict | None = None,
) -> tuple[StreamEngine, ModelParts]:
    """The engine, and the loaded parts it runs (what a backend fallback rebuilds from)."""
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    config = config or EngineConfig()
    parts = load_model(model, taesd=taesd, lcm_lora=lcm_lora, loras=loras, device=device, dtype=dtype)
    be = make_backend(backend, parts, config=config, **(backend_options or {}))
    prompts = PromptEncoder(parts.tokenizer, parts.text_encoder, device, dtype)
    return StreamEngine(be, prompts, parts.spec, config, params), parts


FALLBACK = {"compile": "torch", "torch+graphs": "torch", "onnxruntime": "torch"}


def next_backend(name: str) -> str | None:
    """The next backend down: tensorrt -> compile (torch+graphs where Triton is missing) -> torch."""
    return cuda_torch_backend() if name == "tensorrt" else FALLBACK.get(name)


def fallback_for(engine: StreamEngine, parts: ModelParts) -> Callable[[], str | None]:
    """The failsafe's switch: build the next backend down that can run here and move the engine to it."""

    def switch() -> str | None:
        name = next_backend(engine.backend.name)
        while name is not None:
            try:
                backend = make_backend(name, parts, config=engine.config)
            except BackendUnavailable as exc:
                log.warning("fallback backend %s is unavailable: %s", name, exc)
                name = next_backend(name)
                continue
            engine.swap_backend(backend)
            return name
        return None

    return switch
