"""What the engine thread hands the send thread: finished outputs, or engine images still to be converted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from dreamwire.bridges.base import Frame
from dreamwire.control.params import Params
from dreamwire.live.imageops import to_uint8
from dreamwire.live.transfer import wait_for


@dataclass(frozen=True)
class Output:
    """One frame as it went to the sink, and what made it (for ``on_sent`` observers and tests)."""

    frame: Frame
    params: Params
    skipped: bool = False  # the similarity filter skipped the step: the previous output again
    delay: int = 0  # stream-batch delay of the step that made it, in engine calls
    bypass: bool = False  # the input passed straight through
    held: bool = False  # repeated because nothing new came (a live sink while the source is silent)


@dataclass(frozen=True)
class PendingOutputs:
    """Engine outputs not yet turned into pixels: the send thread converts them, off the engine's critical path."""

    images: torch.Tensor  # (f, 3, H, W) in [-1, 1] on the engine's device
    sizes: list[tuple[int, int] | None]
    outputs: list[Output]  # each output's identity; pixels are filled in by the send thread
    ready: Any = None  # CUDA event the engine stream recorded after the step (None off CUDA)

    def finish(self, download: Callable[[torch.Tensor], Any]) -> Iterator[Output]:
        """Each output with host pixels in its sink's layout and size, converted one at a time on the
        calling (send) thread's stream, right before it is written."""
        wait_for(self.ready, self.images)
        for i, (o, size) in enumerate(zip(self.outputs, self.sizes)):
            pixels = download(to_uint8(self.images[i:i + 1], o.frame.layout, size)[0])
            yield replace(o, frame=replace(o.frame, pixels=pixels))
