"""The word-from-a-set parameter kind (``quantize``'s off/beat/bar), beside the kinds in :mod:`kinds`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dreamwire.control.kinds import ControlError, Kind


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
