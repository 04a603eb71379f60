"""Builds a ready :class:`StreamEngine` from names (model, backend) and configs."""

from __future__ import annotations

import torch

from dreamwire.backends.select import make_backend
from dreamwire.control.params import Params
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.prompts import PromptEncoder
from dreamwire.engine.stream import StreamEngine
from dreamwire.models.load import load_model
from dreamwire.models.lora import DEFAULT_LCM_LORA


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_engine(
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
) -> StreamEngine:
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    config = config or EngineConfig()
    parts = load_model(model, taesd=taesd, lcm_lora=lcm_lora, loras=loras, device=device, dtype=dtype)
    be = make_backend(backend, parts, config=config, **(backend_options or {}))
    prompts = PromptEncoder(parts.tokenizer, parts.text_encoder, device, dtype)
    return StreamEngine(be, prompts, parts.spec, config, params)
