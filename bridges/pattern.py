"""``pattern``: a moving, deterministic test picture, so ``dreamwire run`` needs no camera.

URI: ``pattern``, ``pattern:WIDTHxHEIGHT`` or ``pattern:WIDTHxHEIGHT@FPS``.
Frame *k* depends only on *k* (never on the clock), so two runs see the same
input. ``@0`` means "on demand": the loop asks for the next frame only when
the engine has taken the last one, which is how benchmarks feed the engine
as fast as it can eat without burning a core on frames nobody reads.
"""

from __future__ import annotations

import re
import time

import numpy as np

from dreamwire.bridges._common import Pacer
from dreamwire.bridges.base import BridgeError, Frame

_URI = re.compile(r"^(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$")


def parse_pattern(rest: str) -> tuple[int | None, int | None, float | None]:
    """``"640x360@30"`` -> ``(640, 360, 30.0)``; missing parts are ``None``."""
    m = _URI.match(rest.strip())
    if not m:
        raise BridgeError(f"pattern: cannot parse {rest!r}; expected pattern[:WIDTHxHEIGHT][@FPS]")
    w, h, fps = m.groups()
    return (int(w) if w else None, int(h) if h else None, float(fps) if fps is not None else None)


def _tile(width: int, height: int) -> np.ndarray:
    """(H, 2W, 3) uint8: a colour gradient with diagonal stripes, periodic in x with period W."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = (np.arange(2 * width, dtype=np.float32) / width)[None, :]
    r = 0.5 + 0.5 * np.sin(2 * np.pi * x)
    g = 0.5 + 0.5 * np.sin(2 * np.pi * y * 1.5)
    b = 0.25 + 0.5 * (((x * width + y * height) // 16) % 2)
    img = np.stack(np.broadcast_arrays(r, g, b), axis=-1)
    return (img * 255.0 + 0.5).astype(np.uint8)


def pattern_frame(index: int, width: int, height: int, tile: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame ``index``: the tile scrolled 4 px per frame plus a white square on a Lissajous path.

    Cheap on purpose (a slice copy): the pattern feeds benchmarks, and must not steal time from the engine.
    """
    tile = _tile(width, height) if tile is None else tile
    offset = (4 * index) % width
    img = tile[:, offset:offset + width].copy()
    side = max(4, min(width, height) // 5)
    cx = int((0.5 + 0.35 * np.sin(index * 0.05)) * (width - side))
    cy = int((0.5 + 0.35 * np.cos(index * 0.037)) * (height - side))
    img[cy:cy + side, cx:cx + side] = 255
    return img


class PatternSource:
    """Frames from :func:`pattern_frame`, paced at ``fps`` (0 = on demand)."""

    def __init__(self, rest: str = "", *, width: int = 512, height: int = 512, fps: float = 30.0) -> None:
        w, h, f = parse_pattern(rest)
        self.width, self.height = w or width, h or height
        self.fps = fps if f is None else f
        if self.width < 8 or self.height < 8 or self.fps < 0:
            raise BridgeError(f"pattern: bad size or rate {self.width}x{self.height}@{self.fps:g}")
        self.on_demand = self.fps == 0
        self._index = 0
        self._pacer = Pacer(0.0)
        self._tile: np.ndarray | None = None

    def open(self) -> None:
        self._tile = _tile(self.width, self.height)
        self._index = 0
        self._pacer = Pacer(self.fps or 0.0)

    def read(self, timeout: float) -> Frame | None:
        if not self._pacer.due(timeout):
            return None
        pixels = pattern_frame(self._index, self.width, self.height, self._tile)
        frame = Frame(pixels, "RGB", self._index, time.perf_counter())
        self._index += 1
        return frame

    def close(self) -> None:
        pass
