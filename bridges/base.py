"""The source/sink protocol every transport implements, and the URI -> bridge registry.

A bridge only moves pixels: it hands the loop :class:`Frame` objects in a
layout it names (RGB/RGBA/BGR/BGRA uint8, any size) and takes them back.
Format conversion and resizing happen once, in :mod:`runtime.imageops`, on
the engine's device.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class BridgeError(RuntimeError):
    """A bridge could not be opened or named; the message says what to do."""


@dataclass(frozen=True)
class Frame:
    """One picture and where it came from.

    ``pixels`` is (H, W, C) uint8 (numpy, or a torch tensor on the way out).
    ``capture_time`` is ``time.monotonic()`` when the source got it, so
    latency = send time - capture time within the process. ``timecode`` is the
    source's own clock (NDI: 100 ns units), passed through untouched so hosts
    can sync. ``source_id`` on an output frame is the id of the input frame it
    was made from.
    """

    pixels: Any
    layout: str
    frame_id: int
    capture_time: float
    timecode: int | None = None
    source_id: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@runtime_checkable
class Source(Protocol):
    """A frame producer. Optional class attribute ``on_demand = True``: the source makes frames when
    asked (files, test patterns), so the loop asks for the next only once the engine took the last one
    instead of dropping frames it could have had later."""

    def open(self) -> None: ...

    def read(self, timeout: float) -> Frame | None:
        """The next frame, or ``None`` if none arrived within ``timeout`` seconds.

        A source that lost its sender returns ``None`` (and keeps trying to
        reconnect) rather than raising: the loop holds the last output.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """A frame consumer. Optional class attribute ``live = True``: a receiver is watching in real time
    (NDI, Spout), so while the source is silent the loop repeats the last output rather than go dark."""

    def open(self) -> None: ...

    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


# scheme -> "module:SourceClass", "module:SinkClass"; modules import lazily so a missing
# optional extra (ndi, spout) only matters when that bridge is asked for.
REGISTRY: dict[str, tuple[str | None, str | None]] = {
    "pattern": ("bridges.pattern:PatternSource", None),
    "images": ("bridges.images:ImageFolderSource", "bridges.images:ImageFolderSink"),
    "video": ("bridges.video:VideoSource", None),
    "null": (None, "bridges.null:NullSink"),
    "ndi": ("bridges.ndi:NDISource", "bridges.ndi:NDISink"),
    "spout": ("bridges.spout:SpoutSource", "bridges.spout:SpoutSink"),
}


def parse_uri(uri: str) -> tuple[str, str]:
    """``"ndi:Studio (cam 1)"`` -> ``("ndi", "Studio (cam 1)")``; ``"pattern"`` -> ``("pattern", "")``."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.strip().lower()
    if scheme not in REGISTRY:
        raise BridgeError(f"unknown bridge {uri!r}; expected one of: {', '.join(sorted(REGISTRY))}")
    return scheme, rest


def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def make_source(uri: str, **options: Any) -> Source:
    scheme, rest = parse_uri(uri)
    target = REGISTRY[scheme][0]
    if target is None:
        raise BridgeError(f"{scheme!r} cannot be a source")
    return _load(target)(rest, **options)


def make_sink(uri: str, **options: Any) -> Sink:
    scheme, rest = parse_uri(uri)
    target = REGISTRY[scheme][1]
    if target is None:
        raise BridgeError(f"{scheme!r} cannot be a sink")
    return _load(target)(rest, **options)


def as_numpy(pixels: Any) -> np.ndarray:
    """Host-side contiguous uint8 array, for bridges whose SDK wants a buffer."""
    if hasattr(pixels, "detach"):
        pixels = pixels.detach().cpu().numpy()
    return np.ascontiguousarray(pixels, dtype=np.uint8)
