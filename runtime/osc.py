"""OSC control: python-osc sockets in, validated :class:`ControlState` changes out, replies and telemetry back.

A live show needs every bad message to be *reported* and none to change
anything. Datagrams are parsed strictly by :mod:`runtime.osc_wire` first;
python-osc's :class:`Dispatcher` (``strict_timing=False``, so a future
timetag never sleeps the server) only matches addresses. Every message of a
packet is decoded and validated, and the packet's changes go to
:meth:`ControlState.apply` in one call: a bundle lands on one engine step, or
(if any message is bad) not at all.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pythonosc import slip
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from runtime.control import SCHEMA, ControlError, ControlState, ParamSpec
from runtime.osc_wire import (
    DEFAULT_TELEMETRY_PORT,
    OscInputError,
    build_bundle,
    build_message,
    decode_args,
    encode_value,
    parse_packet,
)
from runtime.telemetry import STAT_NAMES

log = logging.getLogger(__name__)

DEFAULT_PORT = 7766
DEFAULT_PREFIX = "/dreamwire"
MAX_DATAGRAM = 65535  # IPv4 UDP payload limit is 65,507; python-osc's default is 8,192
class _RateLimitedLog:
    """At most ``per_s`` warnings a second; the rest are summed into one line, so a flood can't stall I/O."""

    def __init__(self, per_s: int = 10) -> None:
        self.per_s = per_s
        self._window = 0.0
        self._count = 0
        self._suppressed = 0

    def warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._suppressed:
                log.warning("... %d more OSC errors in the last second", self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count <= self.per_s:
            log.warning(msg, *args)
        else:
            self._suppressed += 1


# --- the server -------------------------------------------------------------------------------------


@dataclass
class OscSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    prefix: str = DEFAULT_PREFIX
    allow: tuple[str, ...] = ()  # sender IPs allowed; empty = anyone who can reach the bind address
    telemetry: tuple[str, int] | None = ("127.0.0.1", DEFAULT_TELEMETRY_PORT)
    tcp: bool = True
    telemetry_period: float = 1.0


class OscControl:
    """Owns the UDP (and TCP) servers; turns packets into control changes, status replies and errors."""

    def __init__(self, state: ControlState, stats: Callable[[], Mapping[str, float]],
                 settings: OscSettings | None = None) -> None:
        self.state = state
        self.stats = stats
        self.settings = settings or OscSettings()
        self.prefix = self.settings.prefix.rstrip("/")
        self.dispatcher = Dispatcher(strict_timing=False)  # routing and address patterns only
        for spec in SCHEMA:
            for name in (spec.name, *spec.aliases):
                self.dispatcher.map(f"{self.prefix}/{name}", self._param_handler(spec))
        self.dispatcher.map(f"{self.prefix}/status", lambda _addr, *args: ("status", args))
        self.errors = 0
        self.applied = 0
        self.rejected_senders = 0
        self._count_lock = threading.Lock()
        self._log = _RateLimitedLog()
        self._tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp: BlockingOSCUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _param_handler(spec: ParamSpec) -> Callable[..., tuple[str, str, Any]]:
        def handler(_address: str, *args: Any) -> tuple[str, str, Any]:
            return ("set", spec.name, decode_args(spec, list(args)))

        return handler

    # --- packet -> effects (socket-free, so tests can call it directly) -----------------------------

    def handle_packet(self, dgram: bytes, sender: tuple[str, int], bundle_replies: bool = True) -> list[bytes]:
        """Apply one datagram; return the reply packets for the sender (status answers).

        ``bundle_replies=False`` answers with plain messages: python-osc's TCP client cannot read bundles.
        """
        try:
            messages = parse_packet(dgram)
        except OscInputError as exc:
            self._error(exc.address, exc.reason, sender)
            return []
        changes: dict[str, Any] = {}
        bad = 0
        want_status = False
        for address, args in messages:
            try:
                if len(address) > 256 or sum(address.count(c) for c in "*?[{") > 8:
                    raise ControlError("address pattern too long or too many wildcards")
                handlers = list(self.dispatcher.handlers_for_address(address))
                if not handlers:
                    raise ControlError(f"unknown address; see docs/osc.md (parameters live under {self.prefix}/)")
                for h in handlers:
                    result = h.callback(address, *args)
                    if result[0] == "status":
                        if result[1]:
                            raise ControlError(f"status takes no arguments, got {len(result[1])}")
                        want_status = True
                    else:
                        changes[result[1]] = result[2]
            except ControlError as exc:
                bad += 1
                self._error(address, str(exc), sender)
            except Exception as exc:  # a decoding bug must cost one message, never the server thread
                bad += 1
                log.exception("OSC message %s could not be handled", address)
                self._error(address, f"internal error: {exc}", sender)
        if bad:
            if len(messages) > 1:
                log.info("OSC bundle from %s rejected as a whole (%d bad of %d messages)", sender[0], bad,
                         len(messages))
            return []
        if changes:
            try:
                self.state.apply(changes)
            except ControlError as exc:
                self._error(messages[0][0], str(exc), sender)
                return []
            with self._count_lock:
                self.applied += 1
            log.debug("OSC %s applied %s", sender, changes)
        return self.status_datagrams(bundle_replies) if want_status else []

    def status_datagrams(self, as_bundle: bool = True) -> list[bytes]:
        """``/dreamwire/state/<name>`` per parameter and ``/dreamwire/stats/<name>`` per statistic."""
        params = self.state.params
        msgs = [build_message(f"{self.prefix}/state/{s.name}", encode_value(getattr(params, s.name)))
                for s in SCHEMA]
        msgs += self._stats_messages()
        if not as_bundle:
            return msgs
        bundle = build_bundle(msgs)
        return [bundle] if len(bundle) <= 65000 else msgs  # huge prompt lists: send one by one

    def _stats_messages(self) -> list[bytes]:
        stats = self.stats()
        return [build_message(f"{self.prefix}/stats/{n}", [float(stats.get(n, 0.0))]) for n in STAT_NAMES]

    def telemetry_datagram(self) -> bytes:
        return build_bundle(self._stats_messages())

    def send_telemetry(self) -> None:
        if self.settings.telemetry is not None:
            self._tx.sendto(self.telemetry_datagram(), self.settings.telemetry)

    def _error(self, address: str, reason: str, sender: tuple[str, int]) -> None:
        with self._count_lock:
            self.errors += 1
        self._log.warn("OSC from %s:%s rejected: %s: %s", sender[0], sender[1], address or "(packet)", reason)
        if self.settings.telemetry is None:
            return
        try:
            self._tx.sendto(build_message(f"{self.prefix}/error", [address or "(packet)", reason]),
                            self.settings.telemetry)
        except OSError as exc:
            self._log.warn("cannot send OSC error to telemetry target %s: %s", self.settings.telemetry, exc)

    def allowed(self, sender: tuple[str, int]) -> bool:
        if not self.settings.allow or sender[0] in self.settings.allow:
            return True
        with self._count_lock:
            self.rejected_senders += 1
        self._log.warn("OSC from %s ignored: not in --osc-allow", sender[0])
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
                self._tcp = _TCPServer((s.host, self.port), self)
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
        super().__init__(address, control.dispatcher)
        self.RequestHandlerClass = _UDPHandler
        self.control = control
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        except OSError:
            log.debug("could not enlarge the OSC receive buffer")

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True


class _TCPHandler(socketserver.BaseRequestHandler):
    """OSC 1.1 over TCP (SLIP framing, as python-osc's SimpleTCPClient sends). Never raises: a handler
    exception would close the client's connection."""

    def handle(self) -> None:
        control: OscControl = self.server.control  # type: ignore[attr-defined]
        if not control.allowed(self.client_address):
            return
        buf = b""
        while True:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *frames, buf = buf.split(slip.END)
            if len(buf) > 4 * MAX_DATAGRAM:
                control._error("", "TCP packet too long or missing SLIP END", self.client_address)
                buf = b""
            for framed in frames:
                if not framed:
                    continue
                try:
                    packet = slip.decode(framed)
                except slip.ProtocolError:
                    control._error("", "invalid SLIP framing", self.client_address)
                    continue
                for reply in control.handle_packet(packet, self.client_address, bundle_replies=False):
                    try:
                        self.request.sendall(slip.encode(reply))
                    except OSError:
                        return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # server_close() must not wait for connected clients
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], control: OscControl) -> None:
        self.control = control
        super().__init__(address, _TCPHandler)


__all__ = ["DEFAULT_PORT", "DEFAULT_PREFIX", "MAX_DATAGRAM", "OscControl", "OscSettings"]
