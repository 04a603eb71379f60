"""ParamState: the one place live parameters change, swapped whole so a bundle lands at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from dreamwire.control.params import Params


class ParamState:
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

    def apply(self, changes: Mapping[str, Any], *, values_checked: bool = False,
              engine_checked: bool = False) -> Params:
        """Validate all changes, then swap them in together; on any error nothing changes.

        Each value is checked once on its way in: ``values_checked`` says the caller's decoder already
        ran every value through its kind (an OSC route), so only the rules between parameters and the
        engine's ``check`` run here. ``engine_checked`` also skips the engine's check, for a change that
        cannot affect what it reads (a morph step moves only numbers and blends, see the Rig).
        """
        with self._lock:
            new = self._propose(changes, values_checked, engine_checked)
            if new != self._params:
                self._params = new
                self._version += 1
            return new

    def validate(self, changes: Mapping[str, Any], *, values_checked: bool = False) -> Params:
        """What :meth:`apply` would make of ``changes``, without applying them (for changes held until a
        beat: they are rejected when sent, not when they land)."""
        with self._lock:
            return self._propose(changes, values_checked, False)

    def _propose(self, changes: Mapping[str, Any], values_checked: bool, engine_checked: bool) -> Params:
        new = self._params.replace_checked(changes) if values_checked else self._params.replace(**changes)
        if self._check is not None and not engine_checked:
            self._check(new)
        return new

    def snapshot(self) -> tuple[int, Params]:
        with self._lock:
            return self._version, self._params

    @property
    def params(self) -> Params:
        with self._lock:
            return self._params
