"""Parameter kinds: how each type of live parameter is read and written, in one object per type.

A kind knows how to check a Python value, read OSC arguments, a CLI string
and a TOML value, encode a value for an OSC reply, and describe itself for
the generated docs. The OSC handler, the CLI, the config loader and the docs
generator only ever call these methods, so a new parameter type is one new
class here and never another ``if kind == ...`` branch elsewhere.

Every ``read_*``/``check`` method returns the canonical value or raises
:class:`ControlError` whose message starts with the parameter's name.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any


class ControlError(ValueError):
    """A parameter name or value was rejected; the message names the problem."""


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{name}: expected a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ControlError(f"{name}: {value!r} is not finite")
    return x


def _is_list(value: Any) -> bool:
    return not isinstance(value, (str, bytes)) and isinstance(value, Iterable)


class Kind:
    """Base: a scalar parameter read from exactly one OSC argument or one CLI word."""

    label = "?"  # the type column of docs/osc.md
    osc_args = "?"  # the OSC arguments column
    metavar = "VALUE"
    nargs: str | None = None  # argparse nargs; list kinds take several words
    minimum: float | None = None
    maximum: float | None = None

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def read_osc(self, name: str, args: Sequence[Any]) -> Any:
        if len(args) != 1:
            raise ControlError(f"{name}: expected 1 argument, got {len(args)}")
        return self.check(name, args[0])

    def read_cli(self, name: str, raw: Any) -> Any:
        try:
            value = self._cli_value(name, raw)
        except ControlError:
            raise
        except ValueError:
            raise ControlError(f"{name}: cannot read {raw!r} as {self.label}") from None
        return self.check(name, value)

    def _cli_value(self, name: str, raw: Any) -> Any:
        """CLI words -> the Python value :meth:`check` takes; a ValueError means "cannot read"."""
        return raw

    def read_toml(self, name: str, value: Any) -> Any:
        return self.check(name, value)

    def to_osc(self, value: Any) -> list[Any]:
        return [value]

    def range_label(self) -> str:
        if self.minimum is None and self.maximum is None:
            return "-"
        return f"{_fmt(self.minimum)} .. {_fmt(self.maximum)}"

    def describe_default(self, value: Any) -> str:
        return str(value)

    def _in_range(self, name: str, x: float) -> None:
        if (self.minimum is not None and x < self.minimum) or (self.maximum is not None and x > self.maximum):
            raise ControlError(f"{name}: {x:g} is outside {self.range_label()}")


class Float(Kind):
    label = "float"
    osc_args = "f"
    metavar = "FLOAT"

    def __init__(self, minimum: float | None = None, maximum: float | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def check(self, name: str, value: Any) -> float:
        x = _number(name, value)
        self._in_range(name, x)
        return x

    def _cli_value(self, name: str, raw: Any) -> Any:
        return float(raw)


class Int(Float):
    """Accepts integral floats: TouchDesigner's OSC Out CHOP only sends floats."""

    label = "int"
    osc_args = "i or f (integral)"
    metavar = "INT"

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ControlError(f"{name}: expected an integer, got {type(value).__name__}")
        x = _number(name, value)
        if abs(x - round(x)) > 1e-6:
            raise ControlError(f"{name}: expected an integer, got {value!r}")
        self._in_range(name, x)
        return int(round(x))


_WORDS = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False, "no": False}


class Bool(Kind):
    label = "bool (0/1)"
    osc_args = "i/f 0 or 1, or T/F"
    metavar = "BOOL"

    def check(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        x = _number(name, value)
        if x not in (0.0, 1.0):
            raise ControlError(f"{name}: expected 0 or 1, got {value!r}")
        return bool(x)

    def _cli_value(self, name: str, raw: Any) -> Any:
        text = str(raw).strip().lower()
        if text not in _WORDS:
            raise ControlError(f"{name}: expected 0/1 or true/false, got {raw!r}")
        return _WORDS[text]

    def to_osc(self, value: Any) -> list[Any]:
        return [int(value)]  # every OSC tool reads 0/1 ints; not all read T/F

    def describe_default(self, value: Any) -> str:
        return str(int(value))


class Text(Kind):
    """A string of at most ``max_len`` characters: a status reply must always fit one datagram."""

    label = "string"
    osc_args = "s"
    metavar = "STR"

    def __init__(self, max_len: int = 2048) -> None:
        self.max_len = max_len

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ControlError(f"{name}: expected a string, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise ControlError(f"{name}: {len(value)} characters, at most {self.max_len}")
        return value

    def range_label(self) -> str:
        return f"≤ {self.max_len} chars"

    def describe_default(self, value: Any) -> str:
        return f'"{value}"'


class Choice(Kind):
    """One word out of a fixed set."""

    label = "string (one of)"
    osc_args = "s"
    metavar = "WORD"

    def __init__(self, options: Sequence[str]) -> None:
        self.options = tuple(options)
        self.metavar = "|".join(self.options)

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ControlError(f"{name}: expected one of {', '.join(self.options)}, got {type(value).__name__}")
        if value not in self.options:
            raise ControlError(f"{name}: expected one of {', '.join(self.options)}, got {value!r}")
        return value

    def range_label(self) -> str:
        return " / ".join(self.options)

    def describe_default(self, value: Any) -> str:
        return f'"{value}"'


class _ListKind(Kind):
    """A list parameter: flat OSC arguments (or one OSC array), several CLI words; no arguments = empty."""

    nargs = "*"

    def read_osc(self, name: str, args: Sequence[Any]) -> Any:
        if len(args) == 1 and isinstance(args[0], list):
            args = args[0]
        return self.check(name, list(args))

    def to_osc(self, value: Any) -> list[Any]:
        flat: list[Any] = []
        for item in value:
            flat.extend(item if isinstance(item, tuple) else (item,))
        return flat

    def describe_default(self, value: Any) -> str:
        return "(empty)" if not value else " ".join(map(str, value))


class Pairs(_ListKind):
    """(key, weight) pairs such as a prompt blend: flat ``key, weight, key, weight`` or a list of pairs.

    At most ``max_entries`` pairs: each one costs a CLIP pass or a noise tensor held on the device.
    Weights are normalised by the engine, in float32, so each must be 0 or within
    ``WEIGHT_RANGE`` and their sum at least its lower end: then sums, squares and quotients stay
    finite and no accepted blend can turn into NaN (black) frames.
    """

    WEIGHT_RANGE = (1e-6, 1e6)

    def __init__(self, key: Kind, key_label: str, max_entries: int = 16) -> None:
        self.key = key
        self.key_label = key_label
        self.max_entries = max_entries
        self.label = f"up to {max_entries} pairs of ({key.label}, float)"
        self.osc_args = f"{key.osc_args[0]} f {key.osc_args[0]} f ... (none = clear)"
        self.metavar = f"{key_label.upper()} WEIGHT"

    def check(self, name: str, value: Any) -> tuple[tuple[Any, float], ...]:
        if not _is_list(value):
            raise ControlError(f"{name}: expected a list of pairs")
        items = list(value)
        if items and not isinstance(items[0], (list, tuple)):  # the flat form, as OSC sends it
            if len(items) % 2:
                raise ControlError(f"{name}: expected key/weight pairs, got an odd count ({len(items)})")
            items = [tuple(items[i:i + 2]) for i in range(0, len(items), 2)]
        if len(items) > self.max_entries:
            raise ControlError(f"{name}: {len(items)} entries, at most {self.max_entries}")
        out = []
        for pair in items:
            if len(pair) != 2:
                raise ControlError(f"{name}: each entry must be a (key, weight) pair")
            key, weight = pair
            out.append((self._key(name, key), self._weight(name, weight)))
        lo, _ = self.WEIGHT_RANGE
        total = sum(w for _, w in out)
        if out and total <= 0:
            raise ControlError(f"{name}: weights must not all be zero")
        if out and total < lo:
            raise ControlError(f"{name}: weights sum to {total:g}; at least {lo:g} is needed to normalise them")
        return tuple(out)

    def range_label(self) -> str:
        lo, hi = self.WEIGHT_RANGE
        return f"weights 0 or {lo:g} .. {hi:g}"

    def _key(self, name: str, key: Any) -> Any:
        if isinstance(self.key, Text) and not isinstance(key, str):
            raise ControlError(f"{name}: {self.key_label} must be a string, got {type(key).__name__}")
        return self.key.check(name, key)

    def _weight(self, name: str, weight: Any) -> float:
        w = _number(f"{name} weight", weight)
        lo, hi = self.WEIGHT_RANGE
        if w < 0:
            raise ControlError(f"{name}: weight {w:g} is negative")
        if w and not lo <= w <= hi:
            raise ControlError(f"{name}: weight {w:g} is outside {lo:g} .. {hi:g} (or 0)")
        return w

    def _cli_value(self, name: str, raw: Any) -> Any:
        if isinstance(self.key, Text):
            return [x if i % 2 == 0 else float(x) for i, x in enumerate(raw)]
        return _split_numbers(raw)


class IndexList(_ListKind):
    """Strictly ascending integer indices, at most ``max_len`` of them."""

    label = "list of int"
    osc_args = "i i ... (none = clear)"
    metavar = "INDEX"

    def __init__(self, minimum: int, maximum: int, max_len: int) -> None:
        self.item = Int(minimum, maximum)
        self.minimum, self.maximum = minimum, maximum
        self.max_len = max_len

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        if not _is_list(value):
            raise ControlError(f"{name}: expected a list of integers")
        idx = tuple(self.item.check(name, v) for v in value)
        if len(idx) > self.max_len:
            raise ControlError(f"{name}: at most {self.max_len} indices")
        if any(b <= a for a, b in itertools.pairwise(idx)):
            raise ControlError(f"{name}: indices must be strictly ascending, got {list(idx)}")
        return idx

    def _cli_value(self, name: str, raw: Any) -> Any:
        return _split_numbers(raw)


class ValueList(_ListKind):
    """Up to ``max_len`` values of one scalar kind, e.g. one per loaded ControlNet; none = the defaults."""

    def __init__(self, item: Kind, max_len: int) -> None:
        self.item = item
        self.max_len = max_len
        self.minimum, self.maximum = item.minimum, item.maximum
        self.label = f"list of {item.label} (≤ {max_len})"
        self.osc_args = f"{item.osc_args.split(' ')[0]} ... (none = defaults)"
        self.metavar = item.metavar

    def check(self, name: str, value: Any) -> tuple[Any, ...]:
        if not _is_list(value):
            value = [value]  # one scalar = a list of one
        out = tuple(self.item.check(name, v) for v in value)
        if len(out) > self.max_len:
            raise ControlError(f"{name}: {len(out)} values, at most {self.max_len}")
        return out

    def range_label(self) -> str:
        return self.item.range_label()

    def _cli_value(self, name: str, raw: Any) -> Any:
        words = [x for item in raw for x in str(item).replace(",", " ").split()]
        return [self.item._cli_value(name, w) for w in words]

    def to_osc(self, value: Any) -> list[Any]:
        return [v for x in value for v in self.item.to_osc(x)]

    def describe_default(self, value: Any) -> str:
        return "(empty)" if not value else " ".join(self.item.describe_default(v) for v in value)


def _split_numbers(raw: Iterable[Any]) -> list[float]:
    """CLI words ``"10,20" "30"`` -> ``[10.0, 20.0, 30.0]``."""
    return [float(x) for item in raw for x in str(item).replace(",", " ").split()]
