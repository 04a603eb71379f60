"""The engine's public face: what fixes its shapes, what one call returns, and the two narrow interfaces.

``Backend`` is all the engine asks of torch, compile, onnxruntime or TensorRT; ``Engine`` is all the
frame loop asks of an engine. Both are protocols so a test double or a future engine needs no base
class, and the loop and the backends are typed against this module rather than against
:class:`~dreamwire.engine.stream.StreamEngine` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dreamwire.control.params import Params

if TYPE_CHECKING:  # annotations only: the CLI reads this module's names without paying for torch
    import torch

# The words a user picks these by (flags, TOML, docs); each is turned into behaviour in one place.
BATCHING = ("stream", "sequential")
MODES = ("img2img", "txt2img")
GUIDANCE_MODES = ("none", "full", "self", "onetime")  # guidance.make_guidance
PREPROCESSORS = ("canny", "softedge", "passthrough")  # preprocess.make_preprocessor

Sources = tuple[Any, ...]


@dataclass(frozen=True)
class EngineConfig:
    """What fixes an engine's shapes. Changing it means a new engine, unlike live ``Params``."""

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


@dataclass(frozen=True)
class StepResult:
    """One call's output: (f,3,H,W) images in [-1, 1] on the engine's device.

    ``sources`` names, for each output image, the input it was made from: the
    tag passed to :meth:`Engine.step` with that frame ``delay`` calls
    ago (or the first frame, while the primed buffer drains). The engine is
    the one that knows which frame left the stream batch, so callers keep no
    history of their own.
    """

    images: torch.Tensor
    skipped: bool
    delay: int  # how many calls ago the input that produced these images went in
    sources: Sources = ()


@runtime_checkable
class Backend(Protocol):
    """The one narrow interface the engine needs from a backend (torch, compile, onnxruntime, tensorrt).

    The engine only ever calls these functions, so swapping a backend can change speed but never
    the math; tests compare backends output for output.
    """

    name: str
    device: torch.device
    dtype: torch.dtype

    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *,
             residuals: tuple[torch.Tensor, ...] | None = None,
             added: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Noise/velocity prediction for a batch; ``timestep`` is one value per row.

        ``residuals``: summed ControlNet outputs (down..., mid) added inside the UNet; a backend built
        with ControlNets takes zeros for ``None``, so its UNet graph never changes.
        ``added``: SDXL's added conditioning (``text_embeds`` (B, pooled), ``time_ids`` (B, 6)), one row
        per sample, passed as diffusers' ``added_cond_kwargs``; required for SDXL, refused otherwise.
        The engine passes it only when the conditioning has it, so SD backends may omit the argument.
        """
        ...

    def controlnet(self, index: int, sample: torch.Tensor, timestep: torch.Tensor,
                   encoder_hidden_states: torch.Tensor, image: torch.Tensor, *,
                   added: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
        """ControlNet ``index``'s residuals (down..., mid) at conditioning scale 1 for control images in [0, 1].

        Only called on backends built with ControlNets (``ModelParts.controlnets``); ``added`` as for
        :meth:`unet` (an SDXL ControlNet takes the same added conditioning as its UNet).
        """
        ...

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) images in [-1, 1] -> latents already multiplied by the VAE scaling factor."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> (B,3,H,W) images in [-1, 1]."""
        ...


class Engine(Protocol):
    """What the frame loop needs from an engine: shapes, a live-parameter update, a reset and a step."""

    config: EngineConfig
    device: torch.device
    dtype: torch.dtype

    def update(self, params: Params) -> Any:
        """Take a new live-parameter snapshot; called between steps only."""
        ...

    def reset(self) -> None:
        """Forget the in-flight frames (the input jumped, or the stream restarts after a pause)."""
        ...

    def step(self, images: torch.Tensor | None = None, sources: Sequence[Any] | None = None,
             controlnet_images: Sequence[torch.Tensor | None] | None = None) -> StepResult:
        """One stream-batch call: ``images`` (f,3,H,W) in [-1, 1] for img2img, ``None`` for txt2img."""
        ...
