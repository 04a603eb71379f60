"""Validated, immutable parameter snapshots: the only form in which live values reach the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import ORDERED_PAIRS, SCHEMA, SPECS


def validate(name: str, value: Any) -> Any:
    """Return ``value`` coerced to the parameter's type, or raise :class:`ControlError`."""
    spec = SPECS.get(name)
    if spec is None:
        raise ControlError(f"unknown parameter {name!r}")
    return spec.kind.check(name, value)


def check_pairs(values: Mapping[str, Any]) -> None:
    """Raise :class:`ControlError` when a rule between two parameters (:data:`ORDERED_PAIRS`) is broken."""
    for rule in ORDERED_PAIRS:
        low, high = values[rule.low], values[rule.high]
        for i in range(max(len(low), len(high))):
            lo = low[i] if i < len(low) else rule.low_default
            hi = high[i] if i < len(high) else rule.high_default
            if lo >= hi:
                raise ControlError(f"{rule.low}/{rule.high}: ControlNet {i + 1} would start at {lo:g} and end at "
                                   f"{hi:g}; {rule.low} must be below {rule.high} (else it never runs)")


class Params:
    """An immutable, validated set of values for every parameter in :data:`SCHEMA`.

    Every value passed its kind's check and the whole set passed :func:`check_pairs`; so a change
    only needs its own values checked (:meth:`replace`), or none when they were checked as they
    were decoded (:meth:`replace_checked`).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        merged = {s.name: s.default for s in SCHEMA}
        for k, v in (values or {}).items():
            merged[k] = validate(k, v)
        check_pairs(merged)
        object.__setattr__(self, "_values", merged)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Params:
        check_pairs(values)
        new = object.__new__(cls)
        object.__setattr__(new, "_values", values)
        return new

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
        """A copy with ``changes``; only they are checked (every other value already was)."""
        return self.replace_checked({k: validate(k, v) for k, v in changes.items()})

    def replace_checked(self, changes: Mapping[str, Any]) -> Params:
        """A copy with ``changes`` whose values already passed their kinds' checks (e.g. an OSC route's
        ``read_osc``), so they are not checked again; the rules between parameters still are."""
        unknown = set(changes) - self._values.keys()
        if unknown:
            raise ControlError(f"unknown parameter {sorted(unknown)[0]!r}")
        return Params._trusted({**self._values, **changes})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def changed(self, other: Params) -> set[str]:
        """Names whose value differs from ``other``: the engine's single source of 'what changed'."""
        return {k for k, v in self._values.items() if other._values[k] != v}
