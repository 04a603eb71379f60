"""The VJ command table: OSC addresses that are not parameters (morph, scenes, tempo), declared once.

Like the schema, this is data the OSC address table (:mod:`dreamwire.osc.commands`)
and ``docs/osc.md`` both read: each :class:`CommandSpec` lists its arguments with
types and ranges, and its ``read`` turns a message's arguments into a checked
request or raises :class:`ControlError` naming the argument. No clock or state here: whether a
scene exists is the live layer's question.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dreamwire.control.beats import MAX_BPM, MIN_BPM
from dreamwire.control.curves import CURVES
from dreamwire.control.kinds import ControlError
from dreamwire.control.morph import morph_sort, morphable
from dreamwire.control.schema import SPECS

UNITS = ("seconds", "beats")
MAX_SECONDS = 3600.0
MAX_BEATS = 4096.0
SCENE_MIN, SCENE_MAX = 0, 999


@dataclass(frozen=True)
class ArgSpec:
    name: str
    osc: str  # the OSC type tags accepted
    range: str
    doc: str
    default: str | None = None  # None: required


@dataclass(frozen=True)
class CommandSpec:
    """One address under the prefix (``morph``, ``scene/save`` ...), its arguments and what it does."""

    address: str
    args: tuple[ArgSpec, ...]
    doc: str
    read: Callable[[Sequence[Any]], Request]  # a message's arguments -> a checked request, or ControlError

    @property
    def signature(self) -> str:
        parts = [f"{a.name}:{a.osc}" if a.default is None else f"[{a.name}:{a.osc}]" for a in self.args]
        return " ".join(parts) or "(none)"


@dataclass(frozen=True)
class MorphRequest:
    name: str
    target: Any
    time: float
    curve: str = "linear"
    unit: str = "seconds"


@dataclass(frozen=True)
class SceneSave:
    n: int


@dataclass(frozen=True)
class SceneRecall:
    n: int
    time: float = 0.0
    unit: str = "seconds"


@dataclass(frozen=True)
class TempoRequest:
    bpm: float


@dataclass(frozen=True)
class BeatTap:
    pass


Request = MorphRequest | SceneSave | SceneRecall | TempoRequest | BeatTap


def _count(address: str, args: Sequence[Any], lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ControlError(f"{address}: expected {want} arguments, got {len(args)}")


def _number(address: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{address}: {what} must be a number, got {type(value).__name__} {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ControlError(f"{address}: {what} {value!r} is not finite")
    return x


def _word(address: str, what: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ControlError(f"{address}: {what} must be one of {', '.join(options)}, got {value!r}")
    return value


def _time(address: str, time: Any, unit: Any = "seconds") -> tuple[float, str]:
    unit = _word(address, "unit", unit, UNITS)
    t = _number(address, "time", time)
    limit = MAX_SECONDS if unit == "seconds" else MAX_BEATS
    if t < 0:
        raise ControlError(f"{address}: time {t:g} is negative")
    if t > limit:
        raise ControlError(f"{address}: time {t:g} {unit} is more than {limit:g}")
    return t, unit


def _scene(address: str, value: Any) -> int:
    x = _number(address, "scene number", value)
    if x != int(x):
        raise ControlError(f"{address}: scene number must be an integer, got {value!r}")
    if not SCENE_MIN <= x <= SCENE_MAX:
        raise ControlError(f"{address}: scene {int(x)} is outside {SCENE_MIN} .. {SCENE_MAX}")
    return int(x)


def read_morph(args: Sequence[Any]) -> MorphRequest:
    a = "morph"
    _count(a, args, 3, 5)
    name = args[0]
    if not isinstance(name, str):
        raise ControlError(f"{a}: name must be a parameter name (string), got {type(name).__name__}")
    morph_sort(name)  # unknown or not morphable -> ControlError
    target = args[1]
    if isinstance(target, str) and name != "prompt":
        raise ControlError(f"{a}: {name} target must be a number, got the string {target!r}")
    target = SPECS[name].kind.check(name, target)
    t, unit = _time(a, args[2], args[4] if len(args) > 4 else "seconds")
    curve = _word(a, "curve", args[3], tuple(CURVES)) if len(args) > 3 else "linear"
    return MorphRequest(name, target, t, curve, unit)


def read_scene_save(args: Sequence[Any]) -> SceneSave:
    _count("scene/save", args, 1, 1)
    return SceneSave(_scene("scene/save", args[0]))


def read_scene_recall(args: Sequence[Any]) -> SceneRecall:
    a = "scene/recall"
    _count(a, args, 1, 3)
    n = _scene(a, args[0])
    t, unit = _time(a, args[1] if len(args) > 1 else 0.0, args[2] if len(args) > 2 else "seconds")
    return SceneRecall(n, t, unit)


def read_tempo(args: Sequence[Any]) -> TempoRequest:
    _count("tempo", args, 1, 1)
    bpm = _number("tempo", "bpm", args[0])
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ControlError(f"tempo: bpm {bpm:g} is outside {MIN_BPM:g} .. {MAX_BPM:g}")
    return TempoRequest(bpm)


def read_beat(args: Sequence[Any]) -> BeatTap:
    _count("beat", args, 0, 0)
    return BeatTap()


_TIME_ARGS = (
    ArgSpec("time", "f", f"0 .. {MAX_SECONDS:g} s, or 0 .. {MAX_BEATS:g} beats",
            "how long the morph takes; 0 = at once", "0"),
    ArgSpec("unit", "s", " / ".join(UNITS), "what time counts: seconds, or beats of the current tempo", "seconds"),
)

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("morph", (
        ArgSpec("name", "s", "a number parameter, prompt or seed",
                "what to morph: " + ", ".join(morphable())),
        ArgSpec("target", "f, i or s", "the parameter's own range",
                "where to go: a number, a prompt text (prompt) or a seed (seed)"),
        ArgSpec("time", "f", _TIME_ARGS[0].range, "how long it takes; 0 = at once"),
        ArgSpec("curve", "s", " / ".join(CURVES), "linear; ease = slow at both ends (cosine); ease_in / ease_out "
                "quadratic", "linear"),
        _TIME_ARGS[1],
    ), "Glide a parameter to a target, one value per engine step from the frame clock. prompt crossfades the "
       "embeddings (prompt_blend, weights summing to 1); seed sweeps a seed blend. A new morph of the same "
       "parameter starts from its current value; a direct change of it cancels the morph.", read_morph),
    CommandSpec("scene/save", (ArgSpec("n", "i", f"{SCENE_MIN} .. {SCENE_MAX}", "scene number"),),
                "Snapshot every live parameter as scene n. The --scenes file is rewritten in the background, "
                "never holding up control; the newest saves always reach it. A packet whose save cannot reach "
                "the file (no writable folder) is refused whole.", read_scene_save),
    CommandSpec("scene/recall", (ArgSpec("n", "i", f"{SCENE_MIN} .. {SCENE_MAX}", "a saved scene's number"),
                                 *_TIME_ARGS),
                "Restore every parameter of scene n; with a time, numbers, prompt and seed morph there "
                "(ease curve) and the rest change at once.", read_scene_recall),
    CommandSpec("tempo", (ArgSpec("bpm", "f", f"{MIN_BPM:g} .. {MAX_BPM:g}", "beats per minute"),),
                "Set the tempo, keeping the beat phase (with --link: sets the Link session's tempo).", read_tempo),
    CommandSpec("beat", (), "A tap: a beat falls now. The first tap of a run marks a downbeat; from the second "
                            "tap on the tempo follows the taps.", read_beat),
)
"""Every non-parameter address, in the order docs list them."""
