"""Scenes: numbered snapshots of every live parameter, kept in a TOML file the user names.

The file is rewritten whole after saves, atomically, by a background writer
(see :class:`SceneStore`): a temporary file in the same folder is written,
flushed and fsynced, then moved over the old one with ``os.replace``. A crash
or a full disk mid-write leaves the previous file as it was (and at most a
hidden temporary file), so a show never loses its scenes.
Reading goes through each parameter's kind, exactly as OSC and the config do.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dreamwire.control.commands import SCENE_MAX, SCENE_MIN
from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.control.schema import SCHEMA, SPECS
from dreamwire.files import atomic_write, remove_stale_temps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

HEADER = ("# dreamwire scenes, written by /dreamwire/scene/save (every live parameter per scene).\n"
          "# Edit only while dreamwire is stopped: it rewrites this file on each save.\n")


class SceneFileError(ValueError):
    """The scenes file cannot be read or written; the message names the file and the problem."""


# --- TOML out -------------------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_value(value: Any) -> str:
    """One parameter value as TOML: strings, bools, ints, floats and (nested) arrays of them."""
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in _ESCAPES:
                out.append(_ESCAPES[ch])
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # OSC floats are float32: the shortest decimal that reads back to the same float32 ("0.35", not
        # "0.3499999940395355"), for a file people edit by hand; finite, as the schema never accepts nan/inf.
        return np.format_float_positional(np.float32(value), unique=True, trim="0")
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a scenes file")


def toml_key(key: str) -> str:
    """A table key as written in TOML: bare when it can be, else quoted (so an error shows it as typed)."""
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else toml_value(key)


def scene_body(values: Mapping[str, Any]) -> str:
    """One scene's ``name = value`` lines (kept per scene, so a save renders only its own values)."""
    return "\n".join(f"{name} = {toml_value(values[name])}" for name in (s.name for s in SCHEMA) if name in values)


def scene_toml(n: int, values: Mapping[str, Any], body: str | None = None) -> str:
    """One scene's table, as :func:`scenes_toml` writes it."""
    return f"\n[scenes.{n}]\n" + (scene_body(values) if body is None else body) + "\n"


def scenes_toml(scenes: Mapping[int, Mapping[str, Any]]) -> str:
    return HEADER + "".join(scene_toml(n, scenes[n]) for n in sorted(scenes))


# --- TOML in --------------------------------------------------------------------------------------------


def parse_scenes(text: str, where: str) -> dict[int, dict[str, Any]]:
    """Scenes from a file's text; every value checked by its kind; missing parameters get their defaults."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SceneFileError(f"{where}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"scenes"})
    if extra:
        raise SceneFileError(f"{where}: unknown key {extra[0]!r}; expected only [scenes.N] tables")
    table = data.get("scenes", {})
    if not isinstance(table, dict):
        raise SceneFileError(f"{where}: scenes must be tables [scenes.N]")
    out: dict[int, dict[str, Any]] = {}
    for key, values in table.items():
        if not (key.isascii() and key.isdigit()) or not SCENE_MIN <= int(key) <= SCENE_MAX:  # not "²"
            raise SceneFileError(f"{where}: [scenes.{toml_key(key)}]: scene numbers are {SCENE_MIN} .. {SCENE_MAX}")
        if not isinstance(values, dict):
            raise SceneFileError(f"{where}: scenes.{key} must be a table")
        checked = {}
        for name, value in values.items():
            spec = SPECS.get(name)
            if spec is None:
                raise SceneFileError(f"{where}: [scenes.{key}]: unknown parameter {name!r}")
            try:
                checked[name] = spec.kind.read_toml(name, value)
            except ControlError as exc:
                raise SceneFileError(f"{where}: [scenes.{key}]: {exc}") from None
        try:
            out[int(key)] = Params(checked).as_dict()
        except ControlError as exc:  # a rule between two parameters (controlnet_start < controlnet_end)
            raise SceneFileError(f"{where}: [scenes.{key}]: {exc}") from None
    return out


# --- the file -------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that it is always either the old file or the whole new one."""
    atomic_write(path, text.encode("utf-8"))


class SceneStore:
    """The scenes of a run, in memory and (when a path is given) in their file; thread-safe.

    Saving never waits for the disk: :meth:`save_soon` keeps the scene in memory and wakes one
    background writer, which rewrites the file from the newest scenes whenever it is done with the
    previous write. A burst of saves is coalesced into a few writes, the last of which always holds
    the newest content, and the receive thread never waits for a render or an fsync. Each scene's
    TOML is rendered once, when it is saved, so a write is a join plus the atomic write. :meth:`save`
    is the same followed by :meth:`flush`, for scripts that want the error.
    """

    def __init__(self, path: str | Path | None = None, scenes: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified after every write attempt
        self._scenes: dict[int, dict[str, Any]] = {n: dict(v) for n, v in (scenes or {}).items()}
        self._chunks: dict[int, str] = {n: scene_toml(n, v) for n, v in self._scenes.items()}
        self._generation = 0  # bumped by every save
        self._attempted = 0  # the newest generation a write was tried for
        self._written = 0  # the newest generation on disk
        self._error: str | None = None  # why the last write failed
        self._writing = False
        self._report: Callable[[str], None] | None = None
    @classmethod
    def load(cls, path: str | Path | None) -> SceneStore:
        """Scenes from ``path`` (none yet when it does not exist); raises :class:`SceneFileError`."""
        if path is None:
            return cls()
        p = Path(path).expanduser()
        if p.is_dir():
            raise SceneFileError(f"{p}: is a folder; --scenes takes a file name, e.g. {p / 'scenes.toml'}")
        remove_stale_temps(p)  # a save killed mid-write leaves .NAME.PID.TID.tmp (issue 18.32)
        if not p.exists():
            return cls(p)
        if not p.is_file():  # a FIFO would block the start in read_text; a device is no scenes file
            raise SceneFileError(f"{p}: not a regular file (a pipe, socket or device); --scenes takes a "
                                 "TOML file that dreamwire rewrites on each save")
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SceneFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SceneFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
        return cls(p, parse_scenes(text, str(p)))

    def get(self, n: int) -> dict[str, Any] | None:
        with self._lock:
            scene = self._scenes.get(n)
            return dict(scene) if scene is not None else None

    def numbers(self) -> list[int]:
        with self._lock:
            return sorted(self._scenes)

    def check_writable(self) -> None:
        """Raise :class:`SceneFileError` when a save could not reach the file (its folder, or the nearest
        folder that exists, is no writable folder; the path is no regular file). Cheap, so a packet with a
        save is refused before any of it applies; a write can still fail later (disk full), and is then
        reported."""
        if self.path is None:
            return
        probe = self.path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            problem = f"{probe} is not a folder"
        elif not os.access(probe, os.W_OK | os.X_OK):
            problem = f"folder {probe} is not writable"
        elif self.path.exists() and not self.path.is_file():
            problem = "it is not a regular file"
        else:
            return
        raise SceneFileError(f"not written to {self.path}: {problem}")

    def save_soon(self, numbers: Iterable[int], values: Mapping[str, Any],
                  report: Callable[[str], None] | None = None) -> None:
        """Keep ``values`` as each scene of ``numbers`` and have the file rewritten in the background; never
        waits. ``report`` hears (one line) when that write fails; the scenes then stay in memory, the old
        file intact, and the next save tries again."""
        numbers = list(numbers)
        try:
            body = scene_body(values)
        except TypeError as exc:
            raise SceneFileError(f"scene {numbers[0] if numbers else '?'} not saved: {exc}") from None
        chunks = {n: scene_toml(n, values, body) for n in numbers}
        scene = dict(values)  # shared by the numbers: a scene is replaced, never changed in place
        with self._lock:
            for n in numbers:
                self._scenes[n] = scene
            self._chunks.update(chunks)
            if self.path is None or not numbers:
                return
            self._generation += 1
            self._report = report
            if not self._writing:
                self._writing = True
                threading.Thread(target=self._write_loop, name="dreamwire-scenes", daemon=True).start()

    def save(self, n: int, values: Mapping[str, Any]) -> None:
        """Keep ``values`` as scene ``n`` and rewrite the file now; raises :class:`SceneFileError` when the
        file cannot be written (the scene is then kept in memory only, and the old file is intact)."""
        self.save_soon((n,), values)
        if self.path is not None and not self.flush():
            raise SceneFileError(f"scene {n} kept in memory but not written to {self.path}: {self._error}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the newest scenes were written (or their write failed); True when they are on disk."""
        with self._lock:
            self._settled.wait_for(lambda: self._attempted == self._generation, timeout)
            return self._written == self._generation

    def _write_loop(self) -> None:
        """The one writer: the newest text, again and again until nothing newer was saved; then it ends."""
        assert self.path is not None
        while True:
            with self._lock:
                if self._attempted == self._generation:
                    self._writing = False
                    return
                generation, report = self._generation, self._report
                text = HEADER + "".join(self._chunks[n] for n in sorted(self._chunks))
            error = None
            try:
                atomic_write_text(self.path, text)
            except OSError as exc:
                error = exc.strerror or str(exc)
            with self._lock:
                self._attempted = generation
                if error is None:
                    self._written, self._error = generation, None
                else:
                    self._error = error
                self._settled.notify_all()
            if error is not None:
                log.error("scenes kept in memory but not written to %s: %s", self.path, error)
                if report is not None:
                    report(f"scenes kept in memory but not written to {self.path}: {error}")
