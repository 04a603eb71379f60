"""Start-up settings declared as data: each dataclass field carries its doc, check and CLI form.

:func:`setting` is how ``RuntimeConfig`` (and the OSC server's settings, and
the other subcommands' options) declare a field once. The TOML loader, the
argparse tree and ``docs/config.md`` are all generated from these fields, so
an option cannot be accepted in one place and unknown in another.

A check takes the value as TOML (or an argparse-parsed flag) gives it and
returns the canonical value, or raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dreamwire.control.kinds import Bool, Choice, ControlError, Float, Int, Kind, Text

Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Setting:
    doc: str
    check: Check
    flag: str | None = None  # CLI flag; None: "--" + the dashed name ("--osc-" + name inside [osc])
    parse: Callable[[str], Any] | None = None  # argparse ``type`` for the flag's word (e.g. int)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    repeat: bool = False  # the flag may be given several times, each adding one item
    default_doc: str | None = None  # how docs and --help describe a default that is decided later


def setting(default: Any, doc: str, check: Check, **options: Any) -> Any:
    """A dataclass field with its :class:`Setting`; immutable defaults only (tuples, not lists).

    A :class:`KindCheck` (``choice``, ``integer``, ``number``) also gives the flag its choices and
    argparse type, so a choice list is written once.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings take immutable defaults")
    if isinstance(check, KindCheck):
        options.setdefault("choices", check.choices)
        options.setdefault("parse", check.parse)
    return dataclasses.field(default=default, metadata={"setting": Setting(doc, check, **options)})


def same_as(cls: Any, name: str, **overrides: Any) -> Any:
    """A field declared like ``cls.name`` (same default, doc and check), for another command's options."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    s = dataclasses.replace(f.metadata["setting"], **overrides)
    return dataclasses.field(default=f.default, metadata={"setting": s})


def table(factory: Callable[[], Any], doc: str) -> Any:
    """A nested settings dataclass, written as a ``[name]`` table in TOML."""
    return dataclasses.field(default_factory=factory, metadata={"table": doc})


def settings_of(cls: Any) -> Iterator[tuple[str, Setting]]:
    """``(name, Setting)`` for every declared field of a settings dataclass, in declaration order."""
    for f in dataclasses.fields(cls):
        s = f.metadata.get("setting")
        if s is not None:
            yield f.name, s


def tables_of(cls: Any) -> Iterator[tuple[str, str, type]]:
    """``(name, doc, dataclass)`` for every nested table of a settings dataclass."""
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("table")
        if doc is not None:
            yield f.name, doc, f.default_factory  # type: ignore[misc]


def default_of(cls: Any, name: str) -> Any:
    return next(f for f in dataclasses.fields(cls) if f.name == name).default


def flag_of(cls: Any, name: str, table: str = "") -> str:
    """The CLI flag of a field: its own, else ``--name`` (``--table-name`` inside a table), and
    ``--no-name`` for a switch that is on by default."""
    s = dict(settings_of(cls))[name]
    if s.flag:
        return s.flag
    base = (f"{table}-{name}" if table else name).replace("_", "-")
    return f"--no-{base}" if default_of(cls, name) is True else f"--{base}"


def flag_help(cls: Any, name: str, s: Setting) -> str:
    """The ``--help`` text of a field's flag.

    A switch that is on by default gets a ``--no-`` flag, while its doc says
    what the switch does when on (docs/config.md and TOML use it that way).
    Printed as is next to ``--no-osc-tcp``, "also listen ... (default: true)"
    says the opposite of what the flag does, so the help says it turns it off.
    """
    if default_of(cls, name) is True:
        return f"turn off (on by default): {s.doc}"
    return f"{s.doc} (default: {describe_default(cls, name, s)})"


def describe_default(cls: Any, name: str, s: Setting) -> str:
    if s.default_doc is not None:
        return s.default_doc
    value = default_of(cls, name)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == ():
        return "none"
    return str(value)


# --- checks shared by the settings declarations ---------------------------------------------------------


class KindCheck:
    """A start-up check that is a live-parameter kind, so both read values (and word choices) alike.

    Called with the value alone, as every settings check is; a bad value raises the kinds'
    :class:`ControlError` (a ``ValueError``) whose message the caller prefixes with the flag or key.
    """

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def __call__(self, value: Any) -> Any:
        try:
            return self.kind.check(_NAME, value)
        except ControlError as exc:
            raise ControlError(str(exc).removeprefix(f"{_NAME}: ")) from None

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.kind.options if isinstance(self.kind, Choice) else None

    @property
    def parse(self) -> Callable[[str], Any] | None:
        """argparse's ``type`` for the flag's word: what the kind reads from a CLI word."""
        if isinstance(self.kind, Int):
            return int
        return float if isinstance(self.kind, Float) else None


_NAME = "\x00setting"  # stands in for the name the kinds put first in their messages


def integer(lo: int, hi: int) -> KindCheck:
    return KindCheck(Int(lo, hi))


def number(lo: float, hi: float) -> KindCheck:
    return KindCheck(Float(lo, hi))


def choice(options: tuple[str, ...]) -> KindCheck:
    return KindCheck(Choice(options))


text = KindCheck(Text(max_len=65536))
boolean = KindCheck(Bool())
