"""EngineConfig: what fixes an engine's shapes. Changing it means a new engine, unlike live ``Params``."""

from __future__ import annotations

from dataclasses import dataclass

from dreamwire.engine.guidance import GUIDANCE_MODES

BATCHING = ("stream", "sequential")
MODES = ("img2img", "txt2img")


@dataclass(frozen=True)
class EngineConfig:
    width: int = 512
    height: int = 512
    frames: int = 1  # frame_buffer_size f: frames per call
    guidance: str = "self"
    mode: str = "img2img"
    batching: str = "stream"
    filter_seed: int = 0

    def __post_init__(self) -> None:
        if self.width % 8 or self.height % 8 or self.width < 64 or self.height < 64:
            raise ValueError(f"resolution {self.width}x{self.height}: both sides must be multiples of 8, >= 64")
        if self.frames < 1:
            raise ValueError("frames (frame_buffer_size) must be >= 1")
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}, got {self.batching!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"unknown guidance mode {self.guidance!r}; expected one of {', '.join(GUIDANCE_MODES)}")
        if self.mode == "txt2img" and self.guidance in ("self", "onetime"):
            raise ValueError(f"guidance {self.guidance!r} needs an input image; use 'none' or 'full' in txt2img")
