"""``video:PATH``: a video file as a looping live source (``video:PATH@FPS`` overrides its rate).

Decoding uses imageio's PyAV plugin, so it needs the ``video`` extra
(``pip install 'dreamwire[video]'``, i.e. PyAV); without it, opening fails
with a message that says so instead of a deep import error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dreamwire.bridges._common import Pacer, split_fps
from dreamwire.bridges.base import BridgeError, Frame


class VideoSource:
    """Decodes frames on the receive thread, paced to the file's frame rate, and loops at the end."""

    def __init__(self, rest: str, *, fps: float | None = None) -> None:
        if not rest.strip():
            raise BridgeError("video: needs a file, e.g. video:clip.mp4")
        path, given = split_fps(rest)
        self.path = Path(path).expanduser()
        self.fps = fps if given is None else given
        self.on_demand = self.fps == 0
        self._frames: Iterator[np.ndarray] | None = None
        self._reader: Any = None
        self._index = 0
        self._pacer = Pacer(0.0)

    def open(self) -> None:
        if not self.path.is_file():
            raise BridgeError(f"video: no such file {self.path}")
        try:
            import av  # noqa: F401  (only to fail early with a clear message)
            import imageio.v3 as iio
        except ImportError as exc:
            raise BridgeError("video: needs PyAV; install the extra: pip install 'dreamwire[video]'") from exc
        try:
            meta = iio.immeta(self.path, plugin="pyav")
        except Exception as exc:  # PyAV raises many types for unreadable files; report, don't guess
            raise BridgeError(f"video: cannot read {self.path}: {exc}") from exc
        if self.fps is None:
            self.fps = float(meta.get("fps") or 30.0)
        self._iio = iio
        self._restart()
        self._pacer = Pacer(self.fps or 0.0)

    def _restart(self) -> None:
        self._frames = iter(self._iio.imiter(self.path, plugin="pyav", format="rgb24"))

    def read(self, timeout: float) -> Frame | None:
        assert self._frames is not None, "open() first"
        if not self._pacer.due(timeout):
            return None
        px = next(self._frames, None)
        if px is None:
            self._restart()
            px = next(self._frames, None)
            if px is None:
                raise BridgeError(f"video: {self.path} has no frames")
        frame = Frame(np.ascontiguousarray(px), "RGB", self._index, time.perf_counter())
        self._index += 1
        return frame

    def close(self) -> None:
        self._frames = None
