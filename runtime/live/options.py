"""What a frame loop is asked to do: how many frames, what size goes out, and its timeouts.

Data only, apart from the loop, so the CLI builds its choices without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUT_SIZES = ("input", "engine")


@dataclass
class LoopOptions:
    max_frames: int | None = None  # stop after this many frames were sent
    output_size: str = "input"  # "input": resize outputs back to each input's size; "engine": leave them
    read_timeout: float = 0.1
    # A live sink (NDI, Spout) gets the last output again after this long without a new one, so a
    # dropped source never leaves downstream without frames; None turns it off.
    hold_repeat: float | None = 0.25
    watchdog_period: float = 0.25

    def __post_init__(self) -> None:
        if self.output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {self.output_size!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError("max_frames must be >= 1")
