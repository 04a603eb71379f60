"""Validated, immutable parameter snapshots: the only form in which live values reach the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import SCHEMA, SPECS


def validate(name: str, value: Any) -> Any:
    """Return ``value`` coerced to the parameter's type, or raise :class:`ControlError`."""
    spec = SPECS.get(name)
    if spec is None:
        raise ControlError(f"unknown parameter {name!r}")
    return spec.kind.check(name, value)


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
