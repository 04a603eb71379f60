"""OSC messages -> typed commands -> one atomic :class:`ParamState` change, and status messages back.

No sockets here: :meth:`OscHandler.handle` takes a datagram and returns an
:class:`Outcome`, so every rule is tested without the network. python-osc's
:class:`Dispatcher` (``strict_timing=False``, so a future timetag never
sleeps) only matches addresses and patterns; each route of the address table
(:mod:`dreamwire.osc.commands`) turns a message into a checked command. Every
message of a packet is decoded first and the packet's changes go to
:meth:`Rig.submit` in one call, not checked again: a bundle lands on one
engine step, or (if any message is bad) not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pythonosc.dispatcher import Dispatcher

from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import SCHEMA
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import STAT_NAMES
from dreamwire.osc.commands import Command, RigCommand, StatusRequest, address_table
from dreamwire.osc.reports import error_message
from dreamwire.osc.rig import Rig
from dreamwire.osc.wire import Message, OscInputError, build_message, parse_packet

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/dreamwire"
MAX_ADDRESS = 256
MAX_WILDCARDS = 8


@dataclass
class Outcome:
    """What one packet did: the (address, reason) errors to report, whether it changed the state,
    and whether the sender asked for a status reply."""

    errors: list[tuple[str, str]] = field(default_factory=list)
    applied: bool = False
    status: bool = False


class OscHandler:
    def __init__(self, state: ParamState, stats: Callable[[], Mapping[str, float | str]],
                 prefix: str = DEFAULT_PREFIX, rig: Rig | None = None) -> None:
        self.state = state
        self.rig = rig or Rig(state)
        self.stats = stats
        self.prefix = prefix.rstrip("/")
        self.dispatcher = Dispatcher(strict_timing=False)
        self._routes = {f"{self.prefix}/{a}": route for a, route in address_table(self.rig).items()}
        for address, route in self._routes.items():
            self.dispatcher.map(address, route)

    def commands(self, message: Message) -> list[Command]:
        """The commands one message asks for (a pattern may match several); raises ControlError."""
        address = message.address
        if len(address) > MAX_ADDRESS or sum(address.count(c) for c in "*?[{") > MAX_WILDCARDS:
            raise ControlError("address pattern too long or too many wildcards")
        if not any(c in address for c in "*?[{"):  # a plain address: one dict look-up, not a regex per route
            route = self._routes.get(address)
            routes = [route] if route is not None else []
        else:
            routes = [h.callback for h in self.dispatcher.handlers_for_address(address)]
        if not routes:
            raise ControlError(f"unknown address; see docs/osc.md (parameters live under {self.prefix}/)")
        return [route(address, *message.args) for route in routes]

    def handle(self, dgram: bytes) -> Outcome:
        """Decode every message of ``dgram``, then apply all its changes together or none of them."""
        out = Outcome()
        try:
            messages = parse_packet(dgram)
        except OscInputError as exc:
            out.errors.append((exc.address, exc.reason))
            return out
        changes: dict[str, Any] = {}
        requests: list[Any] = []
        for message in messages:
            try:
                for command in self.commands(message):
                    if isinstance(command, StatusRequest):
                        out.status = True
                    elif isinstance(command, RigCommand):
                        requests.append(command.request)
                    else:
                        changes[command.name] = command.value
            except ControlError as exc:
                out.errors.append((message.address, str(exc)))
            except Exception as exc:  # a decoding bug must cost one message, never the server thread
                log.exception("OSC message %s could not be handled", message.address)
                out.errors.append((message.address, f"internal error: {exc}"))
        if out.errors:
            if len(messages) > 1:
                log.info("OSC bundle rejected as a whole (%d bad of %d messages)", len(out.errors), len(messages))
            out.status = False
            return out
        if changes or requests:
            try:
                self.rig.submit(changes, requests, checked=True)
            except ControlError as exc:
                out.errors.append((messages[0].address, str(exc)))
                return out
            out.applied = True
            log.debug("OSC applied %s %s", changes, requests)
        return out

    # --- replies --------------------------------------------------------------------------------------

    def state_messages(self) -> list[bytes]:
        """``<prefix>/state/<name>`` per parameter, each encoded by its kind.

        The kinds only accept values that encode, so this never fails; if one ever did, the reply
        carries an error message in its place instead of the whole status going unanswered.
        """
        params, rig_status = self.rig.status_snapshot()  # one instant for values and morph progress
        out = []
        for s in SCHEMA:
            address = f"{self.prefix}/state/{s.name}"
            try:
                out.append(build_message(address, s.kind.to_osc(getattr(params, s.name))))
            except Exception as exc:  # python-osc raises BuildError/struct.error/OverflowError
                log.error("cannot encode %s for a status reply: %s", address, exc)
                out.append(self.error_message(address, f"value cannot be encoded: {exc}"))
        for name, args in rig_status:
            out.append(build_message(f"{self.prefix}/state/{name}", args))
        return out

    def stats_messages(self) -> list[bytes]:
        """``<prefix>/stats/<name>`` per statistic (one float each), then ``<prefix>/health state reason``."""
        stats = self.stats()
        out = [build_message(f"{self.prefix}/stats/{n}", [float(stats.get(n, 0.0))]) for n in STAT_NAMES]
        out.append(build_message(f"{self.prefix}/health", [str(stats.get("health_state", "ok")),
                                                            str(stats.get("health_reason", ""))]))
        return out

    def error_message(self, address: str, reason: str) -> bytes:
        return error_message(self.prefix, address, reason)
