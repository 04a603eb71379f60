"""The live tempo: a beat grid steered by /dreamwire/tempo and /dreamwire/beat taps, or by Ableton Link.

Link comes from the optional ``aalink`` package (``pip install 'dreamwire[link]'``),
imported only when ``--link`` asks for it. The aalink API used (artfwo/aalink,
src/aalink.cpp): ``Link(bpm, loop)``, and the properties ``enabled``, ``quantum``,
``tempo`` (read/write), ``beat`` and ``phase`` (read at Link's current time). No
``sync()`` futures are awaited, so the event loop handed to it never needs to run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dreamwire.control.beats import BEATS_PER_BAR, BeatGrid, check_bpm, from_link, tap, with_tempo
from dreamwire.control.kinds import ControlError


class LinkUnavailable(RuntimeError):
    """``--link`` was asked for but aalink is not installed."""


class LinkSession:
    """An Ableton Link peer; :meth:`grid` reads the session's tempo, beat and bar phase."""

    def __init__(self, bpm: float = 120.0, link: Any = None) -> None:
        self._loop = None
        if link is None:
            try:
                import asyncio

                from aalink import Link
            except ImportError as exc:
                raise LinkUnavailable("--link needs the aalink package: pip install 'dreamwire[link]'") from exc
            self._loop = asyncio.new_event_loop()
            link = Link(bpm, self._loop)
        self.link = link
        self.link.quantum = BEATS_PER_BAR
        self.link.enabled = True

    def grid(self, now: float) -> BeatGrid:
        return from_link(float(self.link.tempo), float(self.link.beat), float(self.link.phase), now)

    def set_tempo(self, bpm: float) -> None:
        self.link.tempo = bpm

    @property
    def peers(self) -> int:
        return int(getattr(self.link, "num_peers", 0))

    def close(self) -> None:
        self.link.enabled = False
        if self._loop is not None:
            self._loop.close()


class TempoClock:
    """Thread-safe beat grid on ``clock``'s time line: OSC tempo and taps, or a :class:`LinkSession`."""

    def __init__(self, clock: Callable[[], float], bpm: float = 120.0, link: LinkSession | None = None) -> None:
        now = clock()
        self.clock = clock
        self.link = link
        self._lock = threading.Lock()
        self._grid = BeatGrid(check_bpm(bpm), now, now)
        self._taps: tuple[float, ...] = ()

    @property
    def source(self) -> str:
        return "link" if self.link is not None else "osc"

    def grid(self, now: float | None = None) -> BeatGrid:
        now = self.clock() if now is None else now
        if self.link is not None:
            return self.link.grid(now)
        with self._lock:
            return self._grid

    def set_bpm(self, bpm: float, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if self.link is not None:
            self.link.set_tempo(check_bpm(bpm))
            return
        with self._lock:
            self._grid = with_tempo(self._grid, bpm, now)

    def check_tap(self) -> None:
        if self.link is not None:
            raise ControlError("beat: following Ableton Link (--link); taps are ignored")

    def tap(self, now: float | None = None) -> None:
        self.check_tap()
        now = self.clock() if now is None else now
        with self._lock:
            self._grid, self._taps = tap(self._grid, self._taps, now)
