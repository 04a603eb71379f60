"""OSC sockets: python-osc's UDP server and an OSC 1.1 TCP server in front of :class:`OscHandler`.

Transport only: each datagram goes to the handler, errors are counted,
logged (rate-limited, so a flood cannot stall I/O) and sent to the telemetry
target as ``/dreamwire/error``, and status replies go back to the sender.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_server import BlockingOSCUDPServer

from dreamwire.control.settings import boolean, integer, number, setting, text
from dreamwire.live.state import ControlState
from dreamwire.logs import Throttle
from dreamwire.osc.binding import prepare_bind
from dreamwire.osc.handler import DEFAULT_PREFIX, OscHandler
from dreamwire.osc.ratelimit import RateLimit
from dreamwire.osc.rig import Rig
from dreamwire.osc.tcp import TCPServer
from dreamwire.osc.wire import build_bundle

log = logging.getLogger(__name__)

DEFAULT_PORT = 7766
DEFAULT_TELEMETRY_PORT = 7767
MAX_DATAGRAM = 65535  # IPv4 UDP payload limit is 65,507; python-osc's default is 8,192
MAX_STATUS_BUNDLE = 65000


def parse_target(v: Any) -> tuple[str, int] | None:
    """``"HOST:PORT"`` -> ``(host, port)``; ``"off"`` -> ``None``. Raises ValueError with a clear message."""
    v = text(v)
    if v.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:{DEFAULT_TELEMETRY_PORT}) or 'off', got {v!r}")
    return host, int(port)


def parse_allow(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [x for x in v.replace(",", " ").split() if x]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of sender IP addresses, got {v!r}")
    return tuple(v)


def parse_prefix(v: Any) -> str:
    v = text(v).rstrip("/")
    if not v.startswith("/") or " " in v:
        raise ValueError(f"expected an OSC address prefix like /dreamwire, got {v!r}")
    return v


@dataclass
class OscSettings:
    """The ``[osc]`` table of the config file and the ``--osc-*`` flags."""

    host: str = setting("127.0.0.1", "OSC bind address; 0.0.0.0 opts in to the network", text)
    port: int = setting(DEFAULT_PORT, "OSC UDP (and TCP) port; 0 picks a free one", integer(0, 65535), parse=int)
    prefix: str = setting(DEFAULT_PREFIX, "OSC address prefix", parse_prefix)
    allow: tuple[str, ...] = setting((), "only accept OSC from these sender addresses (empty: anyone who can "
                                     "reach the bind address)", parse_allow, metavar="IP[,IP...]")
    telemetry: tuple[str, int] | None = setting(
        ("127.0.0.1", DEFAULT_TELEMETRY_PORT), "where stats and errors go, HOST:PORT or 'off'", parse_target,
        flag="--telemetry", metavar="HOST:PORT", default_doc=f"127.0.0.1:{DEFAULT_TELEMETRY_PORT}")
    tcp: bool = setting(True, "also listen for OSC 1.1 over TCP (SLIP framing) on the same port", boolean)
    telemetry_period: float = setting(1.0, "seconds between telemetry pushes", number(0.05, 3600.0), parse=float)
    status_rate: float = setting(10.0, "status replies per second per sender (address and port for UDP, one "
                                 "connection for TCP; a burst of as many is allowed); more requests are refused "
                                 "and reported", number(0.1, 10000.0), parse=float)
    status_rate_total: float = setting(100.0, "status replies per second to all senders together; when more "
                                       "senders ask, each active one gets an equal share", number(1.0, 100000.0),
                                       parse=float)
    tcp_max_connections: int = setting(32, "TCP connections at once; a new one beyond this closes the one idle "
                                       "longest", integer(1, 4096), parse=int)
    tcp_idle_timeout: float = setting(900.0, "seconds a TCP connection may stay silent before it is closed",
                                      number(1.0, 86400.0), parse=float)


class OscControl:
    """Owns the UDP (and TCP) servers; turns packets into control changes, status replies and errors."""

    def __init__(self, state: ControlState, stats: Callable[[], Mapping[str, float | str]],
                 settings: OscSettings | None = None, rig: Rig | None = None) -> None:
        self.state = state
        self.settings = settings or OscSettings()
        self.handler = OscHandler(state, lambda: {**stats(), "osc_errors": float(self.errors)}, self.settings.prefix,
                                  rig)
        self.prefix = self.handler.prefix
        self.errors = 0
        self.applied = 0
        self.rejected_senders = 0
        self._count_lock = threading.Lock()
        self._log = Throttle(log, burst=10, window=1.0)
        self._replies = RateLimit(self.settings.status_rate, max(1.0, self.settings.status_rate),
                                  total=max(self.settings.status_rate_total, self.settings.status_rate))
        self._tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp: BlockingOSCUDPServer | None = None
        self._tcp: TCPServer | None = None
        self._threads: list[threading.Thread] = []

    def handle_packet(self, dgram: bytes, sender: tuple[str, int], bundle_replies: bool = True,
                      transport: str = "udp") -> list[bytes]:
        """Apply one datagram; return the reply packets for the sender (status answers).

        ``bundle_replies=False`` answers with plain messages: python-osc's TCP client cannot read bundles.
        The status budget is per ``(transport, address, port)``: one UDP sender, or one TCP connection.
        """
        outcome = self.handler.handle(dgram)
        for address, reason in outcome.errors:
            self.error(address, reason, sender)
        if outcome.applied:
            with self._count_lock:
                self.applied += 1
        if not outcome.status:
            return []
        if not self._replies.allow((transport, *sender)):
            self.error(f"{self.prefix}/status", f"more than {self.settings.status_rate:g} replies/s to "
                       f"{sender[0]}:{sender[1]} (or {self.settings.status_rate_total:g}/s to all senders); "
                       "request refused (--osc-status-rate, --osc-status-rate-total)", sender)
            return []
        return self.status_datagrams(bundle_replies)

    def status_datagrams(self, as_bundle: bool = True) -> list[bytes]:
        """Every ``state`` and ``stats`` message, as one bundle when it fits a datagram."""
        msgs = self.handler.state_messages() + self.handler.stats_messages()
        if not as_bundle:
            return msgs
        bundle = build_bundle(msgs)
        if len(bundle) <= MAX_STATUS_BUNDLE:
            return [bundle]
        self._log.log("status reply of %d bytes does not fit one datagram: sent as %d messages", len(bundle),
                      len(msgs))
        return msgs

    def telemetry_datagram(self) -> bytes:
        return build_bundle(self.handler.stats_messages())

    def send_telemetry(self) -> None:
        if self.settings.telemetry is not None:
            self._tx.sendto(self.telemetry_datagram(), self.settings.telemetry)

    def error(self, address: str, reason: str, sender: tuple[str, int]) -> None:
        """Count, log and report one rejected packet or message."""
        with self._count_lock:
            self.errors += 1
        self._log.log("OSC from %s:%s rejected: %s: %s", sender[0], sender[1], address or "(packet)", reason)
        self.report(address, reason)

    def report(self, address: str, reason: str) -> None:
        """Send ``<prefix>/error address reason`` to the telemetry target (also for the loop's own errors)."""
        if self.settings.telemetry is None:
            return
        try:
            self._tx.sendto(self.handler.error_message(address, reason), self.settings.telemetry)
        except OSError as exc:
            self._log.log("cannot send OSC error to telemetry target %s: %s", self.settings.telemetry, exc)

    def allowed(self, sender: tuple[str, int]) -> bool:
        if not self.settings.allow or sender[0] in self.settings.allow:
            return True
        with self._count_lock:
            self.rejected_senders += 1
        self._log.log("OSC from %s ignored: not in --osc-allow", sender[0])
        return False

    # --- sockets ----------------------------------------------------------------------------------

    def start(self) -> OscControl:
        """Bind and serve in background threads; raises OSError (e.g. port in use) before serving."""
        s = self.settings
        self._udp = _UDPServer((s.host, s.port), self)
        self._threads.append(threading.Thread(target=self._udp.serve_forever, kwargs={"poll_interval": 0.1},
                                              name="dreamwire-osc-udp", daemon=True))
        if s.tcp:
            try:
                self._tcp = TCPServer((s.host, self.port), self, s.tcp_max_connections, s.tcp_idle_timeout)
            except OSError as exc:
                log.warning("OSC over TCP disabled: cannot bind %s:%s (%s); UDP is serving", s.host, self.port,
                            exc)
            else:
                self._threads.append(threading.Thread(target=self._tcp.serve_forever,
                                                      kwargs={"poll_interval": 0.1},
                                                      name="dreamwire-osc-tcp", daemon=True))
        for t in self._threads:
            t.start()
        return self

    @property
    def port(self) -> int:
        """The bound UDP port (useful with port 0)."""
        return self._udp.server_address[1] if self._udp else self.settings.port

    @property
    def tcp_port(self) -> int | None:
        return self._tcp.server_address[1] if self._tcp else None

    def close(self) -> None:
        """Stop serving and release the sockets; safe to call on an instance that never started."""
        serving = any(t.is_alive() for t in self._threads)
        for server in (self._udp, self._tcp):
            if server is not None:
                if serving:
                    server.shutdown()  # blocks until serve_forever returns: only when it runs
                server.server_close()
        for t in self._threads:
            t.join(timeout=2.0)
        self.handler.rig.close()  # the newest scenes on disk before the process ends
        self._tx.close()


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        control: OscControl = self.server.control  # type: ignore[attr-defined]
        data, sock = self.request
        if not control.allowed(self.client_address):
            return
        for reply in control.handle_packet(data, self.client_address):
            try:
                sock.sendto(reply, self.client_address)
            except OSError as exc:
                log.warning("cannot answer %s: %s", self.client_address, exc)


class _UDPServer(BlockingOSCUDPServer):
    """python-osc's blocking UDP server (in order, one packet at a time), with a 64 KiB receive size,
    every datagram passed to our handler (python-osc's own check would drop garbage silently) and
    the allow-list applied before any parsing."""

    max_packet_size = MAX_DATAGRAM

    def __init__(self, address: tuple[str, int], control: OscControl) -> None:
        super().__init__(address, control.handler.dispatcher)
        self.RequestHandlerClass = _UDPHandler
        self.control = control
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        except OSError:
            log.debug("could not enlarge the OSC receive buffer")

    def server_bind(self) -> None:
        prepare_bind(self.socket, stream=False)
        super().server_bind()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True
