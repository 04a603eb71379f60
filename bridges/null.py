"""``null``: a sink that discards frames, for benchmarks and headless control tests.

It still pulls the pixels to the host, like a real sink would, so benchmark
figures include the device-to-host copy every real output pays.
"""

from __future__ import annotations

from dreamwire.bridges.base import BridgeError, Frame, as_numpy


class NullSink:
    """Counts frames and throws them away."""

    def __init__(self, rest: str = "") -> None:
        if rest:
            raise BridgeError(f"null takes no argument, got 'null:{rest}'")
        self.frames = 0
        self.last: Frame | None = None

    def open(self) -> None:
        self.frames = 0

    def write(self, frame: Frame) -> None:
        as_numpy(frame.pixels)
        self.frames += 1
        self.last = frame

    def close(self) -> None:
        pass
