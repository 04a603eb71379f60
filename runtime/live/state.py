"""ControlState: the one place live parameters change, swapped whole so a bundle lands at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from dreamwire.control.params import Params


class ControlState:
    """Thread-safe holder of the current :class:`Params`.

    Writers (OSC, CLI) call :meth:`apply` with every change of one message or
    bundle; the engine thread calls :meth:`snapshot` between steps. The version
    number lets the engine tell cheaply whether anything changed.
    """

    def __init__(self, params: Params | None = None, check: Callable[[Params], None] | None = None) -> None:
        """``check`` rejects (with ControlError) values valid in general but not for this run, e.g. a
        t_index beyond the loaded model's grid; it runs before a snapshot is swapped in."""
        self._lock = threading.Lock()
        self._check = check
        self._params = params or Params()
        if check is not None:
            check(self._params)
        self._version = 0

    def apply(self, changes: Mapping[str, Any]) -> Params:
        """Validate all changes, then swap them in together; on any error nothing changes."""
        with self._lock:
            new = self._params.replace(**changes)
            if self._check is not None:
                self._check(new)
            if new != self._params:
                self._params = new
                self._version += 1
            return new

    def validate(self, changes: Mapping[str, Any]) -> Params:
        """What :meth:`apply` would make of ``changes``, without applying them (for changes held until a
        beat: they are rejected when sent, not when they land)."""
        with self._lock:
            new = self._params.replace(**changes)
            if self._check is not None:
                self._check(new)
            return new

    def snapshot(self) -> tuple[int, Params]:
        with self._lock:
            return self._version, self._params

    @property
    def params(self) -> Params:
        with self._lock:
            return self._params
