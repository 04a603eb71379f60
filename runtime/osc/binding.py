"""How the OSC sockets bind: so that a second dreamwire on the same port fails loudly, on every OS.

POSIX: TCP sets ``SO_REUSEADDR`` (a restart may bind while old connections sit in
TIME_WAIT; a second live listener is still refused with EADDRINUSE), UDP sets
nothing (a second bind is refused). Windows: ``SO_REUSEADDR`` means something
else there, it lets another socket bind a port in use and silently take its
packets, so neither server sets it; both set ``SO_EXCLUSIVEADDRUSE`` instead,
which refuses any later bind of the port, even one asking for reuse (Winsock's
"Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE"; Python defines
``socket.SO_EXCLUSIVEADDRUSE`` on Windows only).
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def on_windows() -> bool:
    return sys.platform == "win32"


def prepare_bind(sock: Any, stream: bool) -> None:
    """Set the options above on ``sock`` before ``bind``; ``stream`` is True for TCP."""
    if on_windows():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    elif stream:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
