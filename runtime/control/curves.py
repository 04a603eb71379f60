"""Morph curves: maps from elapsed fraction ``u`` in [0, 1] to blend amount in [0, 1].

Each curve starts at 0, ends at 1 and never leaves [0, 1], so a morph can never
overshoot its target's range (a float outside its bounds would be rejected by
the schema mid-morph).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

Curve = Callable[[float], float]


def linear(u: float) -> float:
    return u


def ease(u: float) -> float:
    """Ease in and out (half a cosine): slow at both ends, so a fade has no visible start or stop."""
    return 0.5 - 0.5 * math.cos(math.pi * u)


def ease_in(u: float) -> float:
    """Slow start, full speed at the end (quadratic)."""
    return u * u


def ease_out(u: float) -> float:
    """Full speed at the start, settling into the target (quadratic)."""
    return 1.0 - (1.0 - u) * (1.0 - u)


CURVES: Mapping[str, Curve] = {"linear": linear, "ease": ease, "ease_in": ease_in, "ease_out": ease_out}
"""Every curve name ``/dreamwire/morph`` accepts, in the order docs list them."""


def progress(elapsed: float, duration: float) -> float:
    """Fraction of a morph done after ``elapsed`` seconds of ``duration``, clamped to [0, 1]."""
    if duration <= 0:
        return 1.0
    return min(1.0, max(0.0, elapsed / duration))


def amount(curve: str, elapsed: float, duration: float) -> float:
    """How far from start to target a morph is after ``elapsed`` seconds: ``curve(progress)``, exactly 0 and 1
    at the ends."""
    u = progress(elapsed, duration)
    if u <= 0.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    return min(1.0, max(0.0, CURVES[curve](u)))
