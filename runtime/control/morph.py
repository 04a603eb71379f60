"""Timed morphs as pure data and functions: where a parameter is after ``t`` seconds of a morph.

A morph is evaluated, never stepped: its value at time ``now`` depends only on
``now``, its start time and its curve, so it is exact on any clock (the live
loop evaluates it once per engine step) and a late step never accumulates error.

Three sorts of parameter morph:

- numbers (any float or int parameter): ``start + (target - start) * curve(u)``, ints rounded;
- prompts: an embedding crossfade, driven through ``prompt_blend`` with weights that
  sum to 1 at every step; at the end the target is set as ``prompt`` and the blend cleared;
- seeds: the same for the noise, through ``seed_blend``.

A new morph of a parameter starts from the value the parameter has now, which
is the running morph's current value: so replacing a morph never jumps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dreamwire.control.curves import amount
from dreamwire.control.kinds import ControlError, Float, Int, Pairs
from dreamwire.control.schema import SPECS

BLENDS = {"prompt": "prompt_blend", "seed": "seed_blend"}
"""Parameters whose morph is a blend, and the blend parameter that carries it."""

MIN_WEIGHT = Pairs.WEIGHT_RANGE[0]
"""Blend weights below this are dropped: the schema accepts weights of 0 or at least this."""

Pairs_ = tuple[tuple[Any, float], ...]


def morph_sort(name: str) -> str:
    """``"number"``, ``"prompt"`` or ``"seed"``; raises ControlError for a parameter that cannot morph."""
    if name in BLENDS:
        return name
    spec = SPECS.get(name)
    if spec is None:
        raise ControlError(f"unknown parameter {name!r}; see docs/osc.md")
    if type(spec.kind) in (Float, Int):
        return "number"
    raise ControlError(f"{name} cannot morph: only numbers, prompt and seed can "
                       f"(morphable: {', '.join(morphable())})")


def morphable() -> list[str]:
    """Every parameter name :func:`morph_sort` accepts."""
    return [s.name for s in SPECS.values() if s.name in BLENDS or type(s.kind) in (Float, Int)]


def normalised(pairs: Sequence[tuple[Any, float]]) -> Pairs_:
    """Weights scaled to sum to 1, tiny ones dropped, equal keys merged (first position kept)."""
    merged: dict[Any, float] = {}
    for key, w in pairs:
        merged[key] = merged.get(key, 0.0) + float(w)
    total = sum(merged.values())
    if total <= 0:
        raise ValueError("a blend needs a positive weight")
    kept = {k: w / total for k, w in merged.items() if w / total >= MIN_WEIGHT}
    total = sum(kept.values())
    return tuple((k, w / total) for k, w in kept.items())


def crossfade(start: Sequence[tuple[Any, float]], target: Sequence[tuple[Any, float]], x: float,
              max_entries: int = 16) -> Pairs_:
    """``(1 - x) * start + x * target`` as one blend whose weights sum to 1 (at most ``max_entries``,
    the heaviest kept when a chain of replaced morphs would need more)."""
    mixed = [(k, w * (1.0 - x)) for k, w in normalised(start)] + [(k, w * x) for k, w in normalised(target)]
    out = normalised([(k, w) for k, w in mixed if w > 0])
    if len(out) > max_entries:
        out = normalised(sorted(out, key=lambda kw: -kw[1])[:max_entries])
    return out


def effective_blend(values: Mapping[str, Any], name: str) -> Pairs_:
    """What the engine renders for ``prompt``/``seed`` now: the blend when set, else the single value."""
    blend = values[BLENDS[name]]
    return normalised(blend) if blend else ((values[name], 1.0),)


@dataclass(frozen=True)
class Morph:
    """One parameter on its way from ``start`` to ``target`` between ``t0`` and ``t0 + duration``.

    For a number, start/target are floats; for a blend they are key/weight pairs
    and ``final`` is what is set when it is done (the target's own prompt/seed and blend).
    """

    name: str
    start: Any
    target: Any
    t0: float
    duration: float
    curve: str = "linear"
    final: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.t0 + self.duration

    def done(self, now: float) -> bool:
        return now >= self.end

    def amount(self, now: float) -> float:
        return amount(self.curve, now - self.t0, self.duration)

    def values(self, now: float) -> dict[str, Any]:
        """The parameter values this morph sets at ``now`` (its final values once it is done)."""
        if self.done(now):
            return dict(self.final)
        x = self.amount(now)
        if self.name in BLENDS:
            return {BLENDS[self.name]: crossfade(self.start, self.target, x)}
        value = self.start + (self.target - self.start) * x
        if isinstance(SPECS[self.name].kind, Int):
            value = int(round(value))
        return {self.name: value}

    def describe(self, now: float) -> str:
        """One line for ``/dreamwire/state/morphs``."""
        left = max(0.0, self.end - now)
        if self.name in BLENDS:
            key = self.final.get(BLENDS[self.name]) or self.final.get(self.name)
            what = f"{self.name} -> {_short(key)}"
        else:
            what = f"{self.name} {self.start:g} -> {self.target:g}"
        return f"{what} {self.curve} {100 * self.amount(now):.0f}% {left:.2f}s left"


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def start_morph(values: Mapping[str, Any], name: str, target: Any, t0: float, duration: float,
                curve: str = "linear", target_blend: Sequence[tuple[Any, float]] = ()) -> Morph:
    """A morph of ``name`` from its current value in ``values`` (a Params dict) to ``target``.

    For ``prompt``/``seed``, ``target`` is the new prompt/seed; ``target_blend`` (a
    scene's blend) is crossfaded to instead when given, and becomes the final blend.
    """
    sort = morph_sort(name)
    if sort == "number":
        return Morph(name, float(values[name]), float(target), t0, duration, curve, {name: target})
    blend_name = BLENDS[name]
    goal = normalised(target_blend) if target_blend else ((target, 1.0),)
    final = {name: target, blend_name: tuple(target_blend)}
    return Morph(name, effective_blend(values, name), goal, t0, duration, curve, final)


def touched(name: str) -> str:
    """The morph a direct change of parameter ``name`` cancels (``prompt_blend`` -> the prompt morph)."""
    for morph_name, blend in BLENDS.items():
        if name == blend:
            return morph_name
    return name
