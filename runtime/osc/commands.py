"""The OSC address table: every address under the prefix, and the one thing each does.

One table, built from the two declarations it serves: every parameter of
:data:`~dreamwire.control.schema.SCHEMA` (and its aliases) sets that parameter,
``status`` asks for a reply, and every entry of
:data:`~dreamwire.control.commands.COMMANDS` (morph, scenes, tempo, beat) asks
the rig for something. Each route checks its message once, as it is decoded:
a value through its parameter's kind, a command through its reader and then
what only the rig knows (is the scene saved, is Link in charge), so every error
names the message that caused it and nothing later checks a value again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dreamwire.control.commands import COMMANDS, CommandSpec, Request
from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import SCHEMA, ParamSpec
from dreamwire.osc.rig import Rig


@dataclass(frozen=True)
class SetParam:
    """Set one parameter to a value that already passed its kind's check."""

    name: str
    value: Any


@dataclass(frozen=True)
class StatusRequest:
    """The sender wants every current value back."""


@dataclass(frozen=True)
class RigCommand:
    """A checked request for the rig (morph, scene, tempo, beat)."""

    request: Request


Command = SetParam | StatusRequest | RigCommand
Route = Callable[..., Command]  # python-osc calls it as route(address, *args)


def _param_route(spec: ParamSpec) -> Route:
    def route(_address: str, *args: Any) -> Command:
        return SetParam(spec.name, spec.kind.read_osc(spec.name, args))

    return route


def _status_route(_address: str, *args: Any) -> Command:
    if args:
        raise ControlError(f"status takes no arguments, got {len(args)}")
    return StatusRequest()


def _command_route(command: CommandSpec, rig: Rig) -> Route:
    def route(_address: str, *args: Any) -> Command:
        request = command.read(args)
        rig.check(request)
        return RigCommand(request)

    return route


def address_table(rig: Rig) -> dict[str, Route]:
    """``address under the prefix -> route``: every address dreamwire answers, nothing else."""
    table: dict[str, Route] = {}
    for spec in SCHEMA:
        route = _param_route(spec)
        for name in (spec.name, *spec.aliases):
            table[name] = route
    table["status"] = _status_route
    for command in COMMANDS:
        table[command.address] = _command_route(command, rig)
    return table
