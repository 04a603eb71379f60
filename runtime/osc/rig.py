"""The VJ rig: timed morphs, quantized changes, scenes and tempo around one :class:`ParamState`.

Writers (the OSC handler) call :meth:`Rig.submit` with one packet's changes and
requests; the engine thread calls :meth:`Rig.tick` once per engine step, before it
takes its parameter snapshot. So every morph value and every held change lands
between steps, computed from the rig's clock (``time.perf_counter`` live, a fake clock
in tests): a morph's value depends only on the step's time, never on jitter.

With ``quantize`` off, changes apply on arrival, as without the rig. With ``beat``
or ``bar`` they are held (already validated) until the first step at or after the
next boundary; a morph or recall held so starts exactly on the boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dreamwire.control.beats import LATE, beats_to_seconds, next_boundary
from dreamwire.control.commands import BeatTap, MorphRequest, Request, SceneRecall, SceneSave, TempoRequest
from dreamwire.control.kinds import ControlError
from dreamwire.control.morph import BLENDS, Morph, effective_blend, morph_sort, start_morph, touched
from dreamwire.control.params import Params, validate
from dreamwire.control.schema import SCHEMA
from dreamwire.live.state import ParamState
from dreamwire.osc.scenes import SceneFileError, SceneStore
from dreamwire.osc.tempo import TempoClock

log = logging.getLogger(__name__)

RECALL_CURVE = "ease"


@dataclass
class _Held:
    due: float
    changes: dict[str, Any]
    requests: list[Request] = field(default_factory=list)


class Rig:
    def __init__(self, state: ParamState, clock: Callable[[], float] = time.perf_counter,
                 scenes: SceneStore | None = None, tempo: TempoClock | None = None,
                 report: Callable[[str, str], None] | None = None) -> None:
        self.state = state
        self.clock = clock
        self.scenes = scenes or SceneStore()
        self.tempo = tempo or TempoClock(clock)
        self.report = report  # (address, reason) of a failure found on the engine thread
        self._lock = threading.RLock()
        self._morphs: dict[str, Morph] = {}
        self._held: list[_Held] = []
        self._state_at = clock()  # the instant the state's values are of: the last step, or the last change

    # --- checks made while a packet is decoded (so the error names the message) ----------------------

    def check(self, request: Request) -> None:
        if isinstance(request, SceneRecall) and self.scenes.get(request.n) is None:
            saved = ", ".join(map(str, self.scenes.numbers())) or "none"
            raise ControlError(f"scene/recall: scene {request.n} is not saved (saved: {saved})")
        if isinstance(request, BeatTap):
            self.tempo.check_tap()

    # --- writers -------------------------------------------------------------------------------------

    def submit(self, changes: Mapping[str, Any], requests: Sequence[Request] = (), *, checked: bool = False) -> None:
        """One packet: validated whole, then applied now or held for the next beat/bar; raises ControlError.

        ``checked``: the values already passed their kinds and the requests :meth:`check` (the OSC
        routes do both as they decode), so neither is checked again; the snapshot as a whole is checked
        once, by the apply (or, for a held change, now and again where it lands, as the state may
        have moved in between).
        """
        now = self.clock()
        if checked:
            changes = dict(changes)
        else:
            changes = {name: validate(name, value) for name, value in changes.items()}
            for r in requests:
                self.check(r)
        timed = [r for r in requests if isinstance(r, (MorphRequest, SceneRecall))]
        saves = [r for r in requests if isinstance(r, SceneSave)]
        if saves:  # a packet is all or nothing: a save that cannot be written refuses it before anything applies
            try:
                self.scenes.check_writable()
            except SceneFileError as exc:
                raise ControlError(f"scene/save: {exc}") from None
        with self._lock:
            mode = changes.get("quantize", self.state.params.quantize)
            if mode == "off":
                if self._held:  # quantize off: what was held lands now, so this newer change wins over it
                    self._land(self._held, now)
                    self._held = []
                self._apply(changes, timed, now)
            else:
                self.state.validate(changes, values_checked=True)
                if "quantize" in changes:
                    self.state.apply({"quantize": changes.pop("quantize")}, values_checked=True)
                if changes or timed:
                    due = next_boundary(self.tempo.grid(now), now, mode, LATE)
                    self._held.append(_Held(due, changes, timed))
            for r in requests:
                if isinstance(r, TempoRequest):
                    self.tempo.set_bpm(r.bpm, now)
                elif isinstance(r, BeatTap):
                    self.tempo.tap(now)
            scene = self.state.params.as_dict() if saves else {}  # this packet's result, before any other lands
        if saves:  # rendered outside the lock the engine step needs (once for all); the file is written later
            self.scenes.save_soon([r.n for r in saves], scene, self._save_failed)

    def _save_failed(self, reason: str) -> None:
        self._failed("scene/save", reason)

    def close(self, timeout: float = 1.5) -> bool:
        """Wait (at most ``timeout`` s) for the newest scenes to reach the file; True when they did."""
        done = self.scenes.flush(timeout)
        if not done:
            log.error("scenes: the newest saves may not be on disk (%s)", self.scenes.path)
        return done

    # --- the engine thread ---------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Land held changes that are due and move every morph to ``now``; never raises."""
        now = self.clock() if now is None else now
        with self._lock:
            due = [h for h in self._held if h.due <= now]
            self._held = [h for h in self._held if h.due > now]
            self._land(due)
            self._state_at = now  # after the held changes: they set it to their boundaries
            if not self._morphs:
                return
            updates: dict[str, Any] = {}
            try:
                for name, m in list(self._morphs.items()):
                    updates.update(_checked(m.values(now)))
                    if m.done(now):
                        del self._morphs[name]
                # A morph moves only numbers and blends, which the engine's check never reads (it reads
                # t_index_list and the ControlNet lists): the snapshot passed that check when the morph
                # started, so the step applies without rebuilding or re-checking anything else.
                self.state.apply(updates, values_checked=True, engine_checked=True)
            except ControlError as exc:  # a morph the engine rejects stops; the others go on next step
                self._morphs.clear()
                self._failed("morph", f"morphs stopped: {exc}")

    def _land(self, held: Sequence[_Held], at: float | None = None) -> None:
        """Apply held packets in order, each at its boundary (or at ``at`` when they are flushed early)."""
        for h in held:
            try:
                self._apply(h.changes, h.requests, h.due if at is None else at)
            except ControlError as exc:
                self._failed("quantize", f"held change dropped: {exc}")

    def _failed(self, address: str, reason: str) -> None:
        log.warning("%s: %s", address, reason)
        if self.report is not None:
            self.report(address, reason)

    # --- applying ------------------------------------------------------------------------------------

    def _seconds(self, t: float, unit: str, at: float) -> float:
        return beats_to_seconds(t, self.tempo.grid(at).bpm) if unit == "beats" else t

    def _apply(self, changes: Mapping[str, Any], requests: Sequence[Request], t0: float) -> None:
        """Changes, recalls and morph starts of one packet, as one state change; morphs from values now."""
        values = {**self.state.params.as_dict(), **changes}
        updates = dict(changes)
        started: dict[str, Morph] = {}
        cancelled = {touched(n) for n in changes}
        for r in requests:
            if isinstance(r, SceneRecall):
                scene = self.scenes.get(r.n)
                if scene is None:
                    raise ControlError(f"scene/recall: scene {r.n} is not saved")
                seconds = self._seconds(r.time, r.unit, t0)
                cancelled |= set(self._morphs) | set(started)
                started.clear()
                for name, m in self._recall(values, scene, seconds, t0).items():
                    started[name] = m
                for name in {s.name for s in SCHEMA} - _morph_owned(started):
                    updates[name] = scene[name]
                values = {**values, **updates}
            elif isinstance(r, MorphRequest):
                seconds = self._seconds(r.time, r.unit, t0)
                current = {**values, **self._current(t0, cancelled)}
                cancelled.add(r.name)
                started.pop(r.name, None)
                m = start_morph(current, r.name, r.target, t0, seconds, r.curve)
                if seconds <= 0:
                    updates.update(m.final)
                    values = {**values, **m.final}
                else:
                    updates.update(_checked(m.values(t0)))
                    started[r.name] = m
        self.state.apply(updates, values_checked=True)
        self._state_at = t0
        for name in cancelled:
            self._morphs.pop(name, None)
        self._morphs.update(started)

    def _current(self, now: float, cancelled: set[str]) -> dict[str, Any]:
        """Running morphs' values at ``now`` (those this packet did not cancel): where a replacing morph
        starts from."""
        out: dict[str, Any] = {}
        for name, m in self._morphs.items():
            if name not in cancelled:
                out.update(m.values(now))
        return out

    @staticmethod
    def _recall(values: Mapping[str, Any], scene: Mapping[str, Any], seconds: float, t0: float) -> dict[str, Morph]:
        if seconds <= 0:
            return {}
        out = {}
        for s in SCHEMA:
            name = s.name
            try:
                sort = morph_sort(name)
            except ControlError:
                continue
            if sort == "number":
                if values[name] != scene[name]:
                    out[name] = start_morph(values, name, scene[name], t0, seconds, RECALL_CURVE)
            elif effective_blend(values, name) != effective_blend(scene, name) or \
                    values[BLENDS[name]] != scene[BLENDS[name]] or values[name] != scene[name]:
                out[name] = start_morph(values, name, scene[name], t0, seconds, RECALL_CURVE, scene[BLENDS[name]])
        return out

    # --- status --------------------------------------------------------------------------------------

    def morphs(self, now: float | None = None) -> list[str]:
        now = self.clock() if now is None else now
        with self._lock:
            return [m.describe(now) for m in self._morphs.values()]

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def status(self) -> list[tuple[str, list[Any]]]:
        """``(name, args)`` for ``/dreamwire/state/<name>``: morphs in flight, tempo, beat, scenes, held changes."""
        return self.status_snapshot()[1]

    def status_snapshot(self) -> tuple[Params, list[tuple[str, list[Any]]]]:
        """The parameters and :meth:`status` taken together: the morphs' progress is described at the instant
        the parameters are of (the last engine step, or the last change), so ``state/strength`` and
        ``state/morphs`` never disagree; tempo and beat are at the time of the request."""
        now = self.clock()
        with self._lock:
            params = self.state.params
            morphs = [m.describe(self._state_at) for m in self._morphs.values()]
            held = len(self._held)
        grid = self.tempo.grid(now)
        return params, [("morphs", morphs), ("tempo", [float(grid.bpm)]), ("beat", [float(grid.beat(now))]),
                        ("tempo_source", [self.tempo.source]), ("scenes", self.scenes.numbers()), ("held", [held])]


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """A morph's computed values, each through its kind once (an int rounded, a blend within its bounds)."""
    return {name: validate(name, value) for name, value in values.items()}


def _morph_owned(morphs: Mapping[str, Morph]) -> set[str]:
    """Parameters a set of running morphs sets (so a recall does not also set them at once)."""
    owned = set()
    for name in morphs:
        owned.add(name)
        if name in BLENDS:
            owned.add(BLENDS[name])
    return owned
