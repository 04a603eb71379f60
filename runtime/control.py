"""The control schema: every live parameter declared once.

OSC, the TOML config, the CLI and ``docs/osc.md`` all read :data:`SCHEMA`, so a
parameter cannot drift between them. Values only ever reach the engine through
:class:`Params` snapshots that passed :func:`validate`; a bad value raises
:class:`ControlError` and changes nothing.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.schedule import strength_to_t_index

T_INDEX_GRID = 50
"""Length of the LCM timestep grid that ``t_index_list`` indexes (``set_timesteps(50)``)."""


class ControlError(ValueError):
    """A parameter name or value was rejected; the message names the problem."""


@dataclass(frozen=True)
class ParamSpec:
    """One live parameter: its type, bounds, default and the doc line users read."""

    name: str
    kind: str  # "float" | "int" | "bool" | "str" | "prompt_pairs" | "seed_pairs" | "index_list"
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    scope: str = "engine"  # "engine" (StreamEngine reads it) or "loop" (frame loop reads it)
    aliases: tuple[str, ...] = ()  # other OSC names for it, e.g. the short ones other tools use

    @property
    def type_label(self) -> str:
        return {
            "float": "float",
            "int": "int",
            "bool": "bool (0/1)",
            "str": "string",
            "prompt_pairs": "pairs of (string, float)",
            "seed_pairs": "pairs of (int, float)",
            "index_list": "list of int",
        }[self.kind]

    @property
    def range_label(self) -> str:
        if self.minimum is None and self.maximum is None:
            return "-"
        return f"{_fmt(self.minimum)} .. {_fmt(self.maximum)}"


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


SCHEMA: tuple[ParamSpec, ...] = (
    ParamSpec("prompt", "str", "an oil painting of a city at night, vivid colors",
              "Positive prompt; ignored while prompt_blend is non-empty."),
    ParamSpec("prompt_blend", "prompt_pairs", (),
              "Weighted prompt blend: embeddings mixed by normalised weights. Empty = use prompt."),
    ParamSpec("negative_prompt", "str", "low quality, blurry, watermark",
              "Negative prompt, used by guidance 'full' and 'onetime'."),
    ParamSpec("guidance_scale", "float", 1.2, "Guidance scale (1 = no guidance). No effect with guidance 'none'.",
              0.0, 20.0, aliases=("guidance", "cfg")),
    ParamSpec("delta", "float", 1.0,
              "RCFG residual strength: 0 = no guidance, 1 = the paper's virtual negative.", 0.0, 1.0),
    ParamSpec("seed", "int", 2, "Noise seed; ignored while seed_blend is non-empty.", 0, 2**31 - 1),
    ParamSpec("seed_blend", "seed_pairs", (),
              "Weighted noise blend of several seeds (variance kept at 1). Empty = use seed."),
    ParamSpec("strength", "float", 0.4,
              "How far the output departs from the input (0..1); mapped onto t_index_list as in diffusers' "
              "LCM img2img.", 0.0, 1.0),
    ParamSpec("steps", "int", 2, "Denoising steps n = stream batch depth (latency n-1 frames).", 1, 8),
    ParamSpec("t_index_list", "index_list", (),
              "Explicit ascending LCM step indices (0..49); overrides strength/steps when non-empty.",
              0, T_INDEX_GRID - 1, aliases=("t_index",)),
    ParamSpec("similarity_filter", "bool", False, "Stochastic similarity filter on/off (img2img only)."),
    ParamSpec("similarity_threshold", "float", 0.98,
              "Cosine similarity above which frames may be skipped.", 0.0, 1.0),
    ParamSpec("similarity_max_skip", "int", 10, "Most consecutive skips before a frame is forced through.",
              0, 1000),
    ParamSpec("pause", "bool", False, "Hold the last output; the engine does no work.", scope="loop"),
    ParamSpec("bypass", "bool", False, "Pass input frames straight through to the output.", scope="loop"),
)

SPECS: Mapping[str, ParamSpec] = {s.name: s for s in SCHEMA}


def _number(spec: ParamSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{spec.name}: expected a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ControlError(f"{spec.name}: {value!r} is not finite")
    return x


def _in_range(spec: ParamSpec, x: float) -> None:
    if (spec.minimum is not None and x < spec.minimum) or (spec.maximum is not None and x > spec.maximum):
        raise ControlError(f"{spec.name}: {x:g} is outside {spec.range_label}")


def _as_int(spec: ParamSpec, value: Any) -> int:
    # Integer parameters accept integral floats: TouchDesigner's OSC Out CHOP only sends floats.
    x = _number(spec, value)
    if abs(x - round(x)) > 1e-6:
        raise ControlError(f"{spec.name}: expected an integer, got {value!r}")
    _in_range(spec, x)
    return int(round(x))


def _pairs(spec: ParamSpec, value: Any, key_kind: str) -> tuple[tuple[Any, float], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ControlError(f"{spec.name}: expected a list of pairs")
    items = list(value)
    if items and not isinstance(items[0], (list, tuple)):
        # Flat form, as OSC sends it: key, weight, key, weight, ...
        if len(items) % 2:
            raise ControlError(f"{spec.name}: expected key/weight pairs, got an odd count ({len(items)})")
        items = [tuple(items[i:i + 2]) for i in range(0, len(items), 2)]
    out = []
    for pair in items:
        if len(pair) != 2:
            raise ControlError(f"{spec.name}: each entry must be a (key, weight) pair")
        key, weight = pair
        w = _number(ParamSpec(spec.name + " weight", "float", 0, ""), weight)
        if w < 0:
            raise ControlError(f"{spec.name}: weight {w:g} is negative")
        if key_kind == "str":
            if not isinstance(key, str):
                raise ControlError(f"{spec.name}: prompt must be a string, got {type(key).__name__}")
            out.append((key, w))
        else:
            out.append((_as_int(SPECS["seed"], key), w))
    if out and sum(w for _, w in out) <= 0:
        raise ControlError(f"{spec.name}: weights must not all be zero")
    return tuple(out)


def validate(name: str, value: Any) -> Any:
    """Return ``value`` coerced to the parameter's type, or raise :class:`ControlError`."""
    spec = SPECS.get(name)
    if spec is None:
        raise ControlError(f"unknown parameter {name!r}")
    if spec.kind == "float":
        x = _number(spec, value)
        _in_range(spec, x)
        return x
    if spec.kind == "int":
        return _as_int(spec, value)
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        x = _number(spec, value)
        if x not in (0.0, 1.0):
            raise ControlError(f"{spec.name}: expected 0 or 1, got {value!r}")
        return bool(x)
    if spec.kind == "str":
        if not isinstance(value, str):
            raise ControlError(f"{spec.name}: expected a string, got {type(value).__name__}")
        return value
    if spec.kind == "prompt_pairs":
        return _pairs(spec, value, "str")
    if spec.kind == "seed_pairs":
        return _pairs(spec, value, "int")
    if spec.kind == "index_list":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ControlError(f"{spec.name}: expected a list of integers")
        idx = tuple(_as_int(spec, v) for v in value)
        if len(idx) > SPECS["steps"].maximum:  # type: ignore[operator]
            raise ControlError(f"{spec.name}: at most {_fmt(SPECS['steps'].maximum)} indices")
        if any(b <= a for a, b in itertools.pairwise(idx)):
            raise ControlError(f"{spec.name}: indices must be strictly ascending, got {list(idx)}")
        return idx
    raise AssertionError(spec.kind)


class Params:
    """An immutable, validated set of values for every parameter in :data:`SCHEMA`."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        merged = {s.name: s.default for s in SCHEMA}
        for k, v in (values or {}).items():
            merged[k] = validate(k, v)
        object.__setattr__(self, "_values", merged)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params is immutable; use replace()")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def replace(self, **changes: Any) -> Params:
        return Params({**self._values, **changes})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def changed(self, other: Params) -> set[str]:
        """Names whose value differs from ``other``: the engine's single source of 'what changed'."""
        return {k for k, v in self._values.items() if other._values[k] != v}

    def effective_t_index(self) -> tuple[int, ...]:
        """The t_index_list in force: the explicit list, else the strength/steps mapping."""
        if self.t_index_list:
            return tuple(self.t_index_list)
        return strength_to_t_index(self.strength, self.steps)


class ControlState:
    """Thread-safe holder of the current :class:`Params`, swapped whole so a bundle lands at once.

    Writers (OSC, CLI) call :meth:`apply` with every change of one message or
    bundle; the engine thread calls :meth:`snapshot` between steps. The version
    number lets the engine tell cheaply whether anything changed.
    """

    def __init__(self, params: Params | None = None) -> None:
        self._lock = threading.Lock()
        self._params = params or Params()
        self._version = 0

    def apply(self, changes: Mapping[str, Any]) -> Params:
        """Validate all changes, then swap them in together; on any error nothing changes."""
        with self._lock:
            new = self._params.replace(**changes)
            if new != self._params:
                self._params = new
                self._version += 1
            return new

    def snapshot(self) -> tuple[int, Params]:
        with self._lock:
            return self._version, self._params

    @property
    def params(self) -> Params:
        with self._lock:
            return self._params
