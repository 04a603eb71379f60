"""Beat-grid math: where beats and bars fall, tap tempo and quantize boundaries, as pure functions.

A :class:`BeatGrid` is a tempo plus the time of one beat and one downbeat, on
whatever clock the caller uses (the live loop's ``time.perf_counter``, or a fake
clock in tests). Every function returns a new grid; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MIN_BPM = 20.0
MAX_BPM = 300.0
BEATS_PER_BAR = 4
TAP_WINDOW = 4
"""Tap tempo averages the intervals between the last few taps."""
EPS = 1e-9  # a change arriving this close to a boundary lands on it, not one beat later


@dataclass(frozen=True)
class BeatGrid:
    bpm: float = 120.0
    beat_origin: float = 0.0  # a time at which a beat falls
    bar_origin: float = 0.0  # a time at which a bar's first beat falls
    beats_per_bar: int = BEATS_PER_BAR

    @property
    def period(self) -> float:
        """Seconds per beat."""
        return 60.0 / self.bpm

    def beat(self, now: float) -> float:
        """Beats since the bar origin (fractional): beat 0, 4, 8 ... are downbeats in 4/4."""
        return (now - self.bar_origin) / self.period


def check_bpm(bpm: float) -> float:
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm):
        raise ValueError(f"bpm must be a number, got {bpm!r}")
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ValueError(f"bpm {bpm:g} is outside {MIN_BPM:g} .. {MAX_BPM:g}")
    return float(bpm)


def beats_to_seconds(beats: float, bpm: float) -> float:
    return beats * 60.0 / bpm


LATE = 0.03
"""A change this many seconds after a boundary still belongs to it: a cue sent on the beat arrives a little
late, and should not wait a whole beat more."""


def next_boundary(grid: BeatGrid, now: float, unit: str, late: float = 0.0) -> float:
    """The first beat (``unit="beat"``) or downbeat (``"bar"``) at or after ``now - late``; ``"off"`` is ``now``."""
    if unit == "off":
        return now
    if unit == "beat":
        origin, span = grid.beat_origin, grid.period
    elif unit == "bar":
        origin, span = grid.bar_origin, grid.period * grid.beats_per_bar
    else:
        raise ValueError(f"unknown quantize unit {unit!r}")
    k = math.ceil((now - late - origin) / span - EPS)
    return origin + k * span


def with_tempo(grid: BeatGrid, bpm: float, now: float) -> BeatGrid:
    """The grid at a new tempo, keeping the beat and bar phase at ``now`` (no jump in the count)."""
    bpm = check_bpm(bpm)
    scale = (60.0 / bpm) / grid.period
    return replace(grid, bpm=bpm, beat_origin=now - (now - grid.beat_origin) * scale,
                   bar_origin=now - (now - grid.bar_origin) * scale)


def tap(grid: BeatGrid, taps: tuple[float, ...], now: float) -> tuple[BeatGrid, tuple[float, ...]]:
    """A beat tap at ``now``: the beat falls here, and the tempo follows the run of recent taps.

    Taps further apart than the slowest tempo allows start a new run. The first tap
    of a run is the downbeat (bar origin); each later tap also re-phases the beats,
    and from the second tap on the tempo is the mean interval of the last taps.
    """
    if taps and now - taps[-1] > 60.0 / MIN_BPM:
        taps = ()
    taps = (*taps, now)[-(TAP_WINDOW + 1):]
    bpm = grid.bpm
    if len(taps) >= 2:
        mean = (taps[-1] - taps[0]) / (len(taps) - 1)
        if mean > 0:
            bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / mean))
    period = 60.0 / bpm
    if len(taps) == 1:
        bar_origin = now
    else:  # keep the downbeat where the run's counting puts it: the nearest bar line of the old grid
        bar_origin = now - (round((now - grid.bar_origin) / period) % grid.beats_per_bar) * period
    return replace(grid, bpm=bpm, beat_origin=now, bar_origin=bar_origin), taps


def from_link(bpm: float, beat: float, phase: float, now: float, beats_per_bar: int = BEATS_PER_BAR) -> BeatGrid:
    """The grid an Ableton Link session describes at ``now``: its tempo, its beat count and its bar phase
    (``phase`` in [0, quantum) with quantum = beats per bar)."""
    period = 60.0 / bpm
    return BeatGrid(bpm=bpm, beat_origin=now - (beat % 1.0) * period, bar_origin=now - (phase % beats_per_bar) * period,
                    beats_per_bar=beats_per_bar)
