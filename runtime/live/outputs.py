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

SUBSTITUTES = ("hold", "passthrough")


@dataclass(frozen=True)
class Output:
    """One frame as it goes to the sink, and what made it (for ``on_sent`` observers and tests).

    ``substitute`` marks a frame that stands in for an engine output that failed (or was not
    made while the engine backs off): ``hold`` sends the last good frame again, ``passthrough``
    the input (``frame.pixels``; also used by ``hold`` when there is no good frame yet).
    """

    frame: Frame
    params: Params
    skipped: bool = False  # the similarity filter skipped the step: the previous output again
    delay: int = 0  # stream-batch delay of the step that made it, in engine calls
    bypass: bool = False  # the input passed straight through
    held: bool = False  # repeated because nothing new came (a live sink while the source is silent)
    substitute: str | None = None


def substitute(frame: Frame, seq: int, params: Params, how: str) -> Output:
    """The stand-in for input ``frame`` when no engine output can be sent for it."""
    return Output(replace(frame, frame_id=seq, source_id=frame.frame_id), params, substitute=how)


@dataclass(frozen=True)
class PendingOutputs:
    """Engine outputs not yet turned into pixels: the send thread converts them, off the engine's critical path."""

    images: torch.Tensor  # (f, 3, H, W) in [-1, 1] on the engine's device
    sizes: list[tuple[int, int] | None]
    outputs: list[Output]  # each output's identity; pixels are filled in by the send thread
    sources: list[Frame]  # the inputs they were made from (for passthrough if the images are bad)
    finite: torch.Tensor | None = None  # 0-dim bool on the device: every value finite (one fused reduction)
    ready: Any = None  # CUDA event the engine stream recorded after the step (None off CUDA)

    def is_finite(self) -> bool:
        """Read the device-side check; the send thread waits for this step's results here anyway."""
        wait_for(self.ready, self.images)
        return True if self.finite is None else bool(self.finite)

    def finish(self, download: Callable[[torch.Tensor], Any]) -> Iterator[Output]:
        """Each output with host pixels in its sink's layout and size, converted one at a time on the
        calling (send) thread's stream, right before it is written."""
        wait_for(self.ready, self.images)
        for i, (o, size) in enumerate(zip(self.outputs, self.sizes)):
            pixels = download(to_uint8(self.images[i:i + 1], o.frame.layout, size)[0])
            yield replace(o, frame=replace(o.frame, pixels=pixels))

    def substitutes(self, how: str) -> list[Output]:
        """Stand-ins for every output of this step (its images were not finite)."""
        return [replace(o, frame=replace(o.frame, pixels=src.pixels, layout=src.layout), substitute=how)
                for o, src in zip(self.outputs, self.sources)]
