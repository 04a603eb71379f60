"""The source/sink protocol every transport implements, and the URI -> bridge registry.

A bridge only moves pixels: it hands the loop :class:`Frame` objects in a
layout it names (RGB/RGBA/BGR/BGRA uint8, any size) and takes them back.
Format conversion and resizing happen once, in :mod:`dreamwire.live.imageops`,
on the engine's device.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

LAYOUTS = ("RGB", "RGBA", "BGR", "BGRA")
"""The pixel layouts a :class:`Frame` may carry (uint8, interleaved)."""


class BridgeError(RuntimeError):
    """A bridge could not be opened or named; the message says what to do."""


@dataclass(frozen=True)
class Frame:
    """One picture and where it came from.

    ``pixels`` is (H, W, C) uint8 (numpy, or a torch tensor on the way out).
    ``capture_time`` is ``time.perf_counter()`` when the source got it, so
    latency = send time - capture time within the process. ``timecode`` is the
    source's own clock (NDI: 100 ns units), passed through untouched so hosts
    can sync, and ``frame_rate`` the rate the source declared (N, D), which an
    NDI sink passes on. ``sender`` names the sender it came from (NDI, Spout).
    ``source_id`` on an output frame is the id of the input frame it was made
    from.
    """

    pixels: Any
    layout: str
    frame_id: int
    capture_time: float
    timecode: int | None = None
    source_id: int | None = None
    frame_rate: tuple[int, int] | None = None
    sender: str | None = None

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
    "pattern": ("dreamwire.bridges.pattern:PatternSource", None),
    "images": ("dreamwire.bridges.images:ImageFolderSource", "dreamwire.bridges.images:ImageFolderSink"),
    "video": ("dreamwire.bridges.video:VideoSource", None),
    "null": (None, "dreamwire.bridges.null:NullSink"),
    "ndi": ("dreamwire.bridges.ndi:NDISource", "dreamwire.bridges.ndi:NDISink"),
    "spout": ("dreamwire.bridges.spout:SpoutSource", "dreamwire.bridges.spout:SpoutSink"),
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


def _make(uri: str, role: int, what: str, options: dict[str, Any]) -> Any:
    scheme, rest = parse_uri(uri)
    target = REGISTRY[scheme][role]
    if target is None:
        raise BridgeError(f"{scheme!r} cannot be a {what}")
    return _load(target)(rest, **options)


def make_source(uri: str, **options: Any) -> Source:
    return _make(uri, 0, "source", options)


def make_sink(uri: str, **options: Any) -> Sink:
    return _make(uri, 1, "sink", options)


def as_numpy(pixels: Any) -> np.ndarray:
    """Host-side contiguous uint8 array, for bridges whose SDK wants a buffer."""
    if hasattr(pixels, "detach"):
        pixels = pixels.detach().cpu().numpy()
    return np.ascontiguousarray(pixels, dtype=np.uint8)
