"""OSC sockets: python-osc's UDP server and an OSC 1.1 TCP server in front of :class:`OscHandler`.

Transport only: each datagram goes to the handler, errors are counted,
logged (rate-limited, so a flood cannot stall I/O) and sent to the telemetry
target as ``/dreamwire/error``, and status replies go back to the sender.
"""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dreamwire.control.settings import boolean, integer, number, setting, text
from dreamwire.live.state import ParamState
from dreamwire.logs import Throttle
from dreamwire.osc.binding import prepare_bind
from dreamwire.osc.handler import DEFAULT_PREFIX, OscHandler
from dreamwire.osc.pacing import Pacer
from dreamwire.osc.ratelimit import RateLimit
from dreamwire.osc.reports import Reports
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
    port: int = setting(DEFAULT_PORT, "OSC UDP (and TCP) port; 0 picks a free one", integer(0, 65535))
    prefix: str = setting(DEFAULT_PREFIX, "OSC address prefix", parse_prefix)
    allow: tuple[str, ...] = setting((), "only accept OSC from these sender addresses (empty: anyone who can "
                                     "reach the bind address)", parse_allow, metavar="IP[,IP...]")
    telemetry: tuple[str, int] | None = setting(
        ("127.0.0.1", DEFAULT_TELEMETRY_PORT), "where stats and errors go, HOST:PORT or 'off'", parse_target,
        flag="--telemetry", metavar="HOST:PORT", default_doc=f"127.0.0.1:{DEFAULT_TELEMETRY_PORT}")
    tcp: bool = setting(True, "also listen for OSC 1.1 over TCP (SLIP framing) on the same port", boolean)
    telemetry_period: float = setting(1.0, "seconds between telemetry pushes", number(0.05, 3600.0))
    status_rate: float = setting(10.0, "status replies per second per sender (address and port for UDP, one "
                                 "connection for TCP; a burst of as many is allowed); more requests are refused "
                                 "and reported", number(0.1, 10000.0))
    status_rate_total: float = setting(100.0, "status replies per second to all senders together; when more "
                                       "senders ask, each active one gets an equal share", number(1.0, 100000.0))
    tcp_max_connections: int = setting(32, "TCP connections at once; a new one beyond this closes the one idle "
                                       "longest", integer(1, 4096))
    tcp_idle_timeout: float = setting(900.0, "seconds a TCP connection may stay silent before it is closed",
                                      number(1.0, 86400.0))


class OscServer:
    """Owns the UDP (and TCP) servers; turns packets into control changes, status replies and errors."""

    def __init__(self, state: ParamState, stats: Callable[[], Mapping[str, float | str]],
                 settings: OscSettings | None = None, rig: Rig | None = None,
                 reports: Reports | None = None) -> None:
        """``reports``: the shared error/telemetry channel (run.py builds it first, for the rig and the
        failsafe too); without one, the control owns its own and closes it."""
        self.state = state
        self.settings = settings or OscSettings()
        self._own_reports = reports is None
        self.reports = reports or Reports(self.settings.telemetry, self.settings.prefix)
        self.handler = OscHandler(state, lambda: {**stats(), "osc_errors": float(self.errors)}, self.settings.prefix,
                                  rig)
        self.prefix = self.handler.prefix
        self.errors = 0
        self.applied = 0
        self.rejected_senders = 0
        self._count_lock = threading.Lock()
        self._log = Throttle(log, burst=10, window=1.0)
        self.pacer = Pacer()
        self._replies = RateLimit(self.settings.status_rate, max(1.0, self.settings.status_rate),
                                  total=max(self.settings.status_rate_total, self.settings.status_rate))
        self._udp: _UDPServer | None = None
        self._tcp: TCPServer | None = None
        self._threads: list[threading.Thread] = []

    def handle_packet(self, dgram: bytes, sender: tuple[str, int], bundle_replies: bool = True,
                      transport: str = "udp") -> list[bytes]:
        """Apply one datagram; return the reply packets for the sender (status answers).

        ``bundle_replies=False`` answers with plain messages: python-osc's TCP client cannot read bundles.
        The status budget is per ``(transport, address, port)``: one UDP sender, or one TCP connection.
        Every caller shares one :class:`Pacer`, so handling packets never takes more than its share of time.
        """
        started = self.pacer.clock()
        try:
            return self._handle_packet(dgram, sender, bundle_replies, transport)
        finally:
            self.pacer.handled(started)

    def _handle_packet(self, dgram: bytes, sender: tuple[str, int], bundle_replies: bool,
                       transport: str) -> list[bytes]:
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
        if self.reports.target is not None:  # the one place the target lives (telemetry off: None)
            self.reports.send(self.telemetry_datagram())

    def error(self, address: str, reason: str, sender: tuple[str, int]) -> None:
        """Count, log and report one rejected packet or message."""
        with self._count_lock:
            self.errors += 1
        self._log.log("OSC from %s:%s rejected: %s: %s", sender[0], sender[1], address or "(packet)", reason)
        self.reports.error(address, reason)

    def allowed(self, sender: tuple[str, int]) -> bool:
        if not self.settings.allow or sender[0] in self.settings.allow:
            return True
        with self._count_lock:
            self.rejected_senders += 1
        self._log.log("OSC from %s ignored: not in --osc-allow", sender[0])
        return False

    # --- sockets ----------------------------------------------------------------------------------

    def start(self) -> OscServer:
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
        if self._own_reports:
            self.reports.close()


class SenderQueues:
    """Received datagrams waiting to be handled, one FIFO per sender, served one per sender in turn.

    One flooding sender must not delay another: the receive thread drains the socket into these
    queues (a recvfrom is cheap, handling a packet is not) and handles one packet of each waiting
    sender per round, so a quiet client waits for at most one packet per active sender, never for a
    flooder's backlog. Each sender's order is kept. Past ``per_sender`` (or ``total``) queued bytes a
    new datagram is dropped and counted, as the kernel would have dropped it from a full buffer.
    """

    def __init__(self, per_sender: int = 1 << 20, total: int = 16 << 20) -> None:
        self.per_sender, self.total = per_sender, total
        self.dropped = 0
        self._queues: dict[tuple[str, int], collections.deque[bytes]] = {}
        self._bytes: dict[tuple[str, int], int] = {}
        self._total = 0

    def __bool__(self) -> bool:
        return bool(self._queues)

    def push(self, sender: tuple[str, int], data: bytes) -> bool:
        size = len(data)
        if self._bytes.get(sender, 0) + size > self.per_sender or self._total + size > self.total:
            self.dropped += 1
            return False
        self._queues.setdefault(sender, collections.deque()).append(data)
        self._bytes[sender] = self._bytes.get(sender, 0) + size
        self._total += size
        return True

    def round(self) -> list[tuple[tuple[str, int], bytes]]:
        """The oldest datagram of every waiting sender, taken off their queues."""
        out = []
        for sender, queue in list(self._queues.items()):
            data = queue.popleft()
            out.append((sender, data))
            self._bytes[sender] -= len(data)
            self._total -= len(data)
            if not queue:
                del self._queues[sender], self._bytes[sender]
        return out


class _UDPServer(socketserver.UDPServer):
    """A UDP server socket with our own receive loop: a 64 KiB receive size, the allow-list
    applied before any parsing, every datagram passed to our handler (python-osc's own check would drop
    garbage silently), and senders served in turn (:class:`SenderQueues`). One thread, so each sender's
    packets are handled in order; :meth:`shutdown` stops it between two packets."""

    max_packet_size = MAX_DATAGRAM
    DRAIN = 4096  # datagrams read per drain before a round is handled

    def __init__(self, address: tuple[str, int], osc: OscServer) -> None:
        # socketserver's UDPServer directly: python-osc's BlockingOSCUDPServer adds only a dispatcher
        # (pythonosc/osc_server.py), which our loop never calls; the handler does the routing.
        super().__init__(address, socketserver.BaseRequestHandler)
        self.osc = osc
        self.queues = SenderQueues()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._log = Throttle(log, burst=3, window=1.0)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        except OSError:
            log.debug("could not enlarge the OSC receive buffer")

    def server_bind(self) -> None:
        prepare_bind(self.socket, stream=False)
        super().server_bind()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self.socket.setblocking(False)  # drained until empty (MSG_DONTWAIT does not exist on Windows)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    if not self.queues and not sel.select(poll_interval):
                        continue
                    self._drain()
                    for sender, data in self.queues.round():
                        if self._stop.is_set():
                            break
                        self._handle(data, sender)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving after the packet being handled; blocks until the loop has returned."""
        self._stop.set()
        self._stopped.wait()

    def _drain(self) -> None:
        dropped = self.queues.dropped
        for _ in range(self.DRAIN):
            try:
                data, sender = self.socket.recvfrom(self.max_packet_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. Windows' WSAECONNRESET after an ICMP port-unreachable
                log.debug("OSC receive: %s", exc)
                break
            if self.osc.allowed(sender):
                self.queues.push(sender, data)
        if self.queues.dropped > dropped:
            self._log.log("OSC: %d datagrams dropped unhandled: a sender sends faster than they can be handled "
                          "(each sender keeps its own queue; others are served in turn)",
                          self.queues.dropped - dropped)

    def _handle(self, data: bytes, sender: tuple[str, int]) -> None:
        for reply in self.osc.handle_packet(data, sender):
            try:
                self.socket.sendto(reply, sender)
            except OSError as exc:
                log.warning("cannot answer %s: %s", sender, exc)
