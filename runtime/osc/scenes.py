"""Scenes: numbered snapshots of every live parameter, kept in a TOML file the user names.

The file is rewritten whole on every save, atomically: a temporary file in the
same folder is written, flushed and fsynced, then moved over the old one with
``os.replace``. A crash or a full disk mid-write leaves the previous file as it
was (and at most a hidden temporary file), so a show never loses its scenes.
Reading goes through each parameter's kind, exactly as OSC and the config do.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        return repr(value)  # finite: the schema never accepts nan/inf
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a scenes file")


def scenes_toml(scenes: Mapping[int, Mapping[str, Any]]) -> str:
    parts = [HEADER]
    for n in sorted(scenes):
        lines = [f"{name} = {toml_value(scenes[n][name])}" for name in (s.name for s in SCHEMA) if name in scenes[n]]
        parts.append(f"\n[scenes.{n}]\n" + "\n".join(lines) + "\n")
    return "".join(parts)


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
        if not key.isdigit() or not SCENE_MIN <= int(key) <= SCENE_MAX:
            raise SceneFileError(f"{where}: [scenes.{key}]: scene numbers are {SCENE_MIN} .. {SCENE_MAX}")
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
        out[int(key)] = Params(checked).as_dict()
    return out


# --- the file -------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that it is always either the old file or the whole new one."""
    atomic_write(path, text.encode("utf-8"))


class SceneStore:
    """The scenes of a run, in memory and (when a path is given) in their file; thread-safe."""

    def __init__(self, path: str | Path | None = None, scenes: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._lock = threading.Lock()
        self._scenes: dict[int, dict[str, Any]] = {n: dict(v) for n, v in (scenes or {}).items()}

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

    def save(self, n: int, values: Mapping[str, Any]) -> None:
        """Keep ``values`` as scene ``n`` and rewrite the file; raises :class:`SceneFileError` when the
        file cannot be written (the scene is then kept in memory only, and the old file is intact)."""
        with self._lock:
            self._scenes[n] = dict(values)
            if self.path is None:
                return
            text = scenes_toml(self._scenes)
            try:
                atomic_write_text(self.path, text)
            except OSError as exc:
                raise SceneFileError(f"scene {n} kept in memory but not written to {self.path}: "
                                     f"{exc.strerror or exc}") from None
