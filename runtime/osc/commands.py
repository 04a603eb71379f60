"""OSC routes of the VJ commands (morph, scenes, tempo, beat): arguments -> a checked request.

The argument rules live in :mod:`dreamwire.control.commands`; here each address
of its table gets a route that also asks the rig what only it knows (is the scene
saved, is Link in charge), so every error names the message that caused it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dreamwire.control.commands import COMMANDS, READERS, Request
from dreamwire.osc.rig import Rig


@dataclass(frozen=True)
class RigCommand:
    request: Request


def command_routes(rig: Rig) -> dict[str, Callable[..., RigCommand]]:
    """``address under the prefix -> route`` for every entry of the command table."""
    def route_for(address: str) -> Callable[..., RigCommand]:
        reader = READERS[address]

        def route(_address: str, *args: Any) -> RigCommand:
            request = reader(args)
            rig.check(request)
            return RigCommand(request)

        return route

    return {c.address: route_for(c.address) for c in COMMANDS}
