"""The per-model-part list kind (one value per loaded ControlNet), beside the kinds in :mod:`kinds`."""

from __future__ import annotations

from typing import Any

from dreamwire.control.kinds import ControlError, Kind, _is_list, _ListKind


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
