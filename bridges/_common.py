"""Small helpers the transport bridges share: pacing, retry timers, layout checks, pixel packing.

Live rigs run for hours with senders that come and go, so a bridge must retry
on a timer rather than on every call (and log state changes once, with
:class:`dreamwire.logs.StateLog`). Pixel packing lives here because both NDI
and Spout want 4-byte pixels in BGRA or RGBA order.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

import numpy as np

from dreamwire.bridges.base import LAYOUTS, BridgeError, as_numpy

_Bridge = TypeVar("_Bridge", bound="OpenClose")
_FPS = re.compile(r"^(.*?)@(\d+(?:\.\d+)?)$")


def split_fps(rest: str) -> tuple[str, float | None]:
    """``"clip.mp4@24"`` -> ``("clip.mp4", 24.0)``; no ``@FPS`` suffix -> ``(rest, None)``."""
    m = _FPS.match(rest)
    return (m.group(1), float(m.group(2))) if m else (rest, None)


class Pacer:
    """Paces a file-like source at ``fps``; never bursts to catch up after a stall.

    ``fps`` 0 means on demand (no pacing): the loop asks for a frame only when
    the engine is ready, which is what benchmarks and offline renders want.
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._next = time.perf_counter()

    def reset(self) -> None:
        self._next = time.perf_counter()

    def due(self, timeout: float) -> bool:
        """Sleep until the next frame is due and return True, or sleep ``timeout`` and return False."""
        if not self.fps:
            return True
        wait = self._next - time.perf_counter()
        if wait > timeout:
            time.sleep(timeout)
            return False
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next, time.perf_counter()) + 1.0 / self.fps
        return True


class Every:
    """True at most once per ``interval`` seconds: retry pacing that never blocks."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -float("inf")

    def due(self, now: float | None = None) -> bool:
        now = time.perf_counter() if now is None else now
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False

    def reset(self) -> None:
        """Make the next :meth:`due` true at once (e.g. after a disconnect)."""
        self._last = -float("inf")


def check_layout(layout: str) -> str:
    """Upper-cased layout name, or a :class:`BridgeError` naming the ones bridges accept."""
    name = str(layout).upper()
    if name not in LAYOUTS:
        raise BridgeError(f"unsupported pixel layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return name


def host_pixels(pixels: Any, layout: str) -> np.ndarray:
    """(H, W, C) contiguous uint8 host array whose channel count matches ``layout``."""
    array = as_numpy(pixels)
    if array.ndim != 3 or array.shape[2] != len(layout):
        raise BridgeError(f"frame pixels have shape {tuple(array.shape)}, expected (H, W, {len(layout)}) "
                          f"for layout {layout}")
    return array


class FourChannelPacker:
    """Turns RGB/BGR frames into RGBX/BGRX without allocating a buffer per frame.

    NDI only carries 4-byte pixels. The alpha byte of a padded frame is 255 and
    the sender is told it is "X" (ignored), so receivers do not key it out.
    """

    def __init__(self) -> None:
        self._buffer: np.ndarray | None = None

    def pack(self, array: np.ndarray, layout: str) -> tuple[np.ndarray, str, bool]:
        """``(pixels4, "BGRA" | "RGBA", has_alpha)`` for a (H, W, C) array in ``layout``."""
        if layout in ("BGRA", "RGBA"):
            return array, layout, True
        height, width = array.shape[:2]
        if self._buffer is None or self._buffer.shape[:2] != (height, width):
            self._buffer = np.empty((height, width, 4), np.uint8)
            self._buffer[..., 3] = 255
        self._buffer[..., :3] = array
        return self._buffer, layout + "A", False


class OpenClose:
    """``with bridge:`` opens and always closes it; bridges implement open()/close()."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Bridge) -> _Bridge:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
