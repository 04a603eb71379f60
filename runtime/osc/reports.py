"""The telemetry target's outgoing channel: statistics bundles and ``<prefix>/error address reason``.

It exists apart from the servers because everything that can fail reports here (a bad packet, the rig
on the engine thread, the failsafe), and all of them are built before, and independent of, the sockets
that receive control.
"""

from __future__ import annotations

import logging
import socket

from dreamwire.logs import Throttle
from dreamwire.osc.wire import build_message

log = logging.getLogger(__name__)


def error_message(prefix: str, address: str, reason: str) -> bytes:
    """``<prefix>/error address reason``: one rejected message (or "(packet)") and why."""
    return build_message(f"{prefix}/error", [address or "(packet)", reason])


class Reports:
    """Sends to ``target`` (host, port), or nowhere when it is ``None`` (telemetry off)."""

    def __init__(self, target: tuple[str, int] | None, prefix: str) -> None:
        self.target = target
        self.prefix = prefix
        self._tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._log = Throttle(log, burst=10, window=1.0)

    def error(self, address: str, reason: str) -> None:
        """Report one failure: a rejected message's address (or "engine") and why."""
        self.send(error_message(self.prefix, address, reason))

    def send(self, datagram: bytes) -> None:
        """Send one datagram; a full buffer or an unreachable target is logged (rate-limited), never raised."""
        if self.target is None:
            return
        try:
            self._tx.sendto(datagram, self.target)
        except OSError as exc:
            self._log.log("cannot send OSC to telemetry target %s: %s", self.target, exc)

    def close(self) -> None:
        self._tx.close()
