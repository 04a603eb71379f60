"""Builds a ready :class:`StreamEngine` from names (model, backend) and configs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.select import fallback_of, make_backend
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig
from dreamwire.engine.background import Background
from dreamwire.engine.controlnet import ControlNetSetup
from dreamwire.engine.prompts import PromptEncoder
from dreamwire.engine.prompts_sdxl import SDXLPromptEncoder
from dreamwire.engine.stream import StreamEngine
from dreamwire.models.controlnet import load_controlnets
from dreamwire.models.load import load_model
from dreamwire.models.parts import ModelParts
from dreamwire.models.sources import DEFAULT_LCM_LORA, ControlNetSource

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_engine(model: str = "tiny", **options: Any) -> StreamEngine:
    return assemble(model, **options)[0]


def assemble(
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
    controlnets: tuple[ControlNetSource, ...] = (),
    control_images: tuple[str, ...] = (),
    background: Background | None = None,
) -> tuple[StreamEngine, ModelParts]:
    """The engine, and the loaded parts it runs (what a backend fallback rebuilds from).

    ``control_images``: each ControlNet's preprocessor (one name for all, or one per ControlNet).
    ``background``: the worker live prompt changes are encoded on (``None``: inside ``update``).
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    config = config or EngineConfig()
    setups = controlnet_setups(controlnets, control_images)
    parts = load_model(model, taesd=taesd, lcm_lora=lcm_lora, loras=loras, device=device, dtype=dtype)
    if controlnets:
        parts.controlnets = load_controlnets(controlnets, parts.unet, device=device, dtype=dtype)
        parts.controlnet_sources = tuple(c.source for c in controlnets)
    be = make_backend(backend, parts, config=config, **(backend_options or {}))
    prompts = prompt_encoder(parts, device, dtype, (config.height, config.width))
    return StreamEngine(be, prompts, parts.spec, config, params, background=background, controlnets=setups), parts


def prompt_encoder(parts: ModelParts, device: torch.device | str, dtype: torch.dtype,
                   size: tuple[int, int]) -> PromptEncoder:
    """The text conditioning for ``parts``' family; ``size`` (height, width) is SDXL's time_ids target."""
    if parts.spec.family == "sdxl":
        return SDXLPromptEncoder((parts.tokenizer, parts.tokenizer_2), (parts.text_encoder, parts.text_encoder_2),
                                 device, dtype, size=size)
    return PromptEncoder(parts.tokenizer, parts.text_encoder, device, dtype)


def controlnet_setups(controlnets: tuple[ControlNetSource, ...], control_images: tuple[str, ...]
                      ) -> tuple[ControlNetSetup, ...]:
    """One setup per ControlNet; raises ValueError for a preprocessor count that matches neither 1 nor them."""
    names = control_images or ("canny",)
    if len(names) == 1:
        names = names * len(controlnets)
    if controlnets and len(names) != len(controlnets):
        raise ValueError(f"--control-image: {len(names)} given for {len(controlnets)} ControlNets; give one for "
                         f"all or one per ControlNet")
    return tuple(ControlNetSetup(preprocessor=p, scale=c.scale) for p, c in zip(names, controlnets))


def next_backend(name: str) -> str | None:
    """The next backend down, from the backend table: tensorrt -> compile (torch+graphs where Triton is
    missing) -> torch."""
    return fallback_of(name)


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
