"""ModelParts: the loaded networks of one model, plus its :class:`~dreamwire.engine.spec.ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dreamwire.engine.spec import ModelSpec


class ModelLoadError(RuntimeError):
    """A model or LoRA could not be loaded; ``str()`` is one line telling the user what to do."""


@dataclass
class ModelParts:
    """What backends run (the modules) and what the engine computes with (``spec``), as loaded.

    ``source`` is what was loaded (a folder or hub id), ``loras`` everything
    fused into the weights (LCM-LoRA first) with scales, and ``fingerprint``
    the weights' hash when it is known without reading files (models built in
    memory, e.g. the GPU benchmark's random-weight UNet); the engine cache
    hashes ``source`` otherwise.
    """

    source: str
    spec: ModelSpec
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    lcm_lora: str | None = None
    loras: tuple[tuple[str, float], ...] = ()
    taesd: str | None = None
    fingerprint: str | None = None
    controlnets: tuple[Any, ...] = ()  # ControlNetModels, in --controlnet order
    controlnet_sources: tuple[str, ...] = ()  # what each was loaded from (engine cache keys hash these)
    text_encoder_2: Any = None  # SDXL: CLIPTextModelWithProjection (pooled embedding + second hidden states)
    tokenizer_2: Any = None
