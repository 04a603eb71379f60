"""``images:DIR``: a folder of pictures in, or numbered PNGs out.

As a source it plays the folder's images in name order, looping, at ``@FPS``
(``images:DIR@FPS``, default 30; 0 = on demand). As a sink it writes
``frame_000000.png``, ``frame_000001.png``, ... so a run leaves a visible
result without any other software.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from dreamwire.bridges._common import Pacer, split_fps
from dreamwire.bridges.base import BridgeError, Frame, as_numpy

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _split(rest: str, what: str) -> tuple[Path, float | None]:
    if not rest.strip():
        raise BridgeError(f"images: needs a folder, e.g. images:./frames (as {what})")
    path, fps = split_fps(rest)
    return Path(path).expanduser(), fps


def _to_rgb(frame: Frame) -> np.ndarray:
    px = as_numpy(frame.pixels)
    if frame.layout.startswith("BGR"):
        px = px[..., [2, 1, 0, 3][: px.shape[-1]]]
    return np.ascontiguousarray(px)


class ImageFolderSource:
    """Loops over the pictures in a folder; decoded once on open, so reads never touch the disk."""

    def __init__(self, rest: str, *, fps: float = 30.0) -> None:
        self.folder, f = _split(rest, "source")
        self.fps = fps if f is None else f
        self.on_demand = self.fps == 0
        self._images: list[np.ndarray] = []
        self._index = 0
        self._pacer = Pacer(0.0)

    def open(self) -> None:
        if not self.folder.is_dir():
            raise BridgeError(f"images: {self.folder} is not a folder")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise BridgeError(f"images: no {'/'.join(SUFFIXES)} files in {self.folder}")
        self._images = []
        for p in files:
            try:
                with Image.open(p) as im:
                    self._images.append(np.asarray(im.convert("RGB")))
            except OSError as exc:
                raise BridgeError(f"images: cannot read {p}: {exc}") from exc
        self._index = 0
        self._pacer = Pacer(self.fps or 0.0)

    def read(self, timeout: float) -> Frame | None:
        if not self._pacer.due(timeout):
            return None
        px = self._images[self._index % len(self._images)]
        frame = Frame(px, "RGB", self._index, time.perf_counter())
        self._index += 1
        return frame

    def close(self) -> None:
        self._images = []


class ImageFolderSink:
    """Writes each output frame as the next numbered PNG (fast compression: this runs live)."""

    def __init__(self, rest: str) -> None:
        self.folder, fps = _split(rest, "sink")
        if fps is not None:
            raise BridgeError("images: a sink takes no @FPS")
        self.frames = 0

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BridgeError(f"images: cannot create {self.folder}: {exc}") from exc
        self.frames = 0

    def write(self, frame: Frame) -> None:
        px = _to_rgb(frame)
        Image.fromarray(px).save(self.folder / f"frame_{self.frames:06d}.png", compress_level=1)
        self.frames += 1

    def close(self) -> None:
        pass
