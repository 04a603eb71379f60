"""OSC 1.1 over TCP (SLIP framing, as python-osc's SimpleTCPClient and TouchDesigner send), hardened.

One thread per connection is what socketserver gives, so connections are
bounded: at most ``max_connections`` at once (a new one closes the one that
has been silent longest, so a show controller can always get in), and one
that sends nothing for ``idle_timeout`` seconds is closed. A handler never
raises: an exception would close that client's connection.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from typing import Any

from pythonosc import slip

from dreamwire.osc.binding import prepare_bind

log = logging.getLogger(__name__)

MAX_PENDING = 4 * 65535  # bytes of an unterminated SLIP frame before it is dropped


class _Handler(socketserver.BaseRequestHandler):
    def setup(self) -> None:
        self.server.opened(self)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.closed(self)  # type: ignore[attr-defined]

    def handle(self) -> None:
        server: TCPServer = self.server  # type: ignore[assignment]
        osc = server.osc
        if not osc.allowed(self.client_address):
            return
        self.request.settimeout(server.idle_timeout)
        buf = b""
        while True:
            try:
                chunk = self.request.recv(65536)
            except TimeoutError:
                log.info("OSC TCP: closing %s:%s after %.0f s without a packet", *self.client_address,
                         server.idle_timeout)
                return
            except OSError:
                return
            if not chunk:
                return
            server.touch(self)
            buf += chunk
            *frames, buf = buf.split(slip.END)
            if len(buf) > MAX_PENDING:
                osc.error("", "TCP packet too long or missing SLIP END", self.client_address)
                buf = b""
            for framed in frames:
                if framed and not self._packet(osc, framed):
                    return

    def _packet(self, osc: Any, framed: bytes) -> bool:
        """Handle one SLIP frame; False when the connection is gone."""
        try:
            packet = slip.decode(framed)
        except slip.ProtocolError:
            osc.error("", "invalid SLIP framing", self.client_address)
            return True
        for reply in osc.handle_packet(packet, self.client_address, bundle_replies=False, transport="tcp"):
            try:
                self.request.sendall(slip.encode(reply))
            except OSError:
                return False
        return True


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # server_close() must not wait for connected clients
    block_on_close = False
    allow_reuse_address = False  # socketserver's SO_REUSEADDR is a port hijack on Windows: see prepare_bind

    def __init__(self, address: tuple[str, int], osc: Any, max_connections: int, idle_timeout: float) -> None:
        self.osc = osc
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._active: dict[_Handler, float] = {}  # handler -> last activity (perf_counter)
        self.evicted = 0
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        prepare_bind(self.socket, stream=True)
        super().server_bind()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._active)

    def opened(self, handler: _Handler) -> None:
        with self._lock:
            self._active[handler] = time.perf_counter()
            victim = min(self._active, key=self._active.get) if len(self._active) > self.max_connections else None
        if victim is not None:
            self.evicted += 1
            log.warning("OSC TCP: %d connections at once; closing the longest idle, %s:%s", self.max_connections + 1,
                        *victim.client_address)
            try:
                victim.request.shutdown(socket.SHUT_RDWR)  # its recv() returns and its thread ends
            except OSError:
                pass

    def touch(self, handler: _Handler) -> None:
        with self._lock:
            if handler in self._active:
                self._active[handler] = time.perf_counter()

    def closed(self, handler: _Handler) -> None:
        with self._lock:
            self._active.pop(handler, None)
