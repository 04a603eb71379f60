"""What one engine call hands back: the images and which input frame each came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

Sources = tuple[Any, ...]


@dataclass(frozen=True)
class StepResult:
    """One call's output: (f,3,H,W) images in [-1, 1] on the engine's device.

    ``sources`` names, for each output image, the input it was made from: the
    tag passed to :meth:`StreamEngine.step` with that frame ``delay`` calls
    ago (or the first frame, while the primed buffer drains). The engine is
    the one that knows which frame left the stream batch, so callers keep no
    history of their own.
    """

    images: torch.Tensor
    skipped: bool
    delay: int  # how many calls ago the input that produced these images went in
    sources: Sources = ()
