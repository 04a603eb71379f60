"""ndi-python plumbing shared by the NDI source, sink and discovery: the runtime, names, addresses.

Why a separate module: ``NDIlib.initialize()`` is process-wide, so bridges share
it through a refcount (first open initializes, last close destroys) and nothing
happens at import time. Finding sources is :mod:`dreamwire.bridges._ndifind`.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from types import ModuleType

from dreamwire.bridges.base import BridgeError

_lock = threading.Lock()
_users = 0
_own: list[str] = []  # stream names this process sends under (a sink's own output is never "the first source")


def load() -> ModuleType:
    """Import ndi-python, or explain exactly what to install."""
    try:
        return importlib.import_module("NDIlib")
    except ModuleNotFoundError as exc:
        if exc.name != "NDIlib":
            raise
        raise BridgeError("NDI needs ndi-python: pip install 'dreamwire[ndi]'") from exc
    except ImportError as exc:  # the wheel is there but libndi.so could not load its dependencies
        raise BridgeError(
            f"ndi-python is installed but its bundled NDI runtime failed to load ({exc}). "
            "On Debian/Ubuntu install the Avahi client library: apt-get install libavahi-client3"
        ) from exc


def acquire(lib: ModuleType) -> None:
    """Take a share of the NDI runtime, initializing it for the first user."""
    global _users
    with _lock:
        if _users == 0 and not lib.initialize():
            raise BridgeError("NDIlib.initialize() failed: NDI needs a CPU with SSE4.2 (x86) or NEON (ARM)")
        _users += 1


def release(lib: ModuleType) -> None:
    """Give back a share; the last user shuts the runtime down."""
    global _users
    with _lock:
        if _users <= 0:
            return
        _users -= 1
        if _users == 0:
            lib.destroy()


_FULL_NAME = re.compile(r"^([^()]*?) \((.*)\)$")


def stream_name(full_name: str) -> str:
    """``"STUDIO-PC (TD out (2))"`` -> ``"TD out (2)"``; a name without a machine part is returned as is."""
    match = _FULL_NAME.match(full_name)
    return match.group(2) if match else full_name


def sending(name: str, on: bool) -> None:
    """Note (``on``) or forget a stream name this process publishes."""
    with _lock:
        if on:
            _own.append(name)
        elif name in _own:
            _own.remove(name)


def match_source(wanted: str, found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sources matching ``wanted``, best first: exact full name, then stream name, then case-insensitive.

    An empty ``wanted`` matches every source (the user asked for "the first one") except the ones this
    process sends itself: ``ndi:`` with ``--sink ndi:dreamwire`` must not feed dreamwire its own output.
    """
    if not wanted:
        with _lock:
            own = set(_own)
        return sorted(s for s in found if stream_name(s[0]) not in own)
    for same in (str.__eq__, lambda a, b: a.casefold() == b.casefold()):
        hits = [s for s in found if same(s[0], wanted)] or [s for s in found if same(stream_name(s[0]), wanted)]
        if hits:
            return sorted(hits)
    return []


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?$")


@dataclass(frozen=True)
class Target:
    """What ``ndi:...`` names.

    * ``ndi:`` - the first source found;
    * ``ndi:NAME`` - by full name ``MACHINE (Name)`` or just ``Name``;
    * ``ndi:NAME@HOST`` - by name, also asking HOST directly (no mDNS needed);
    * ``ndi:@HOST:PORT`` / ``ndi:NAME@HOST:PORT`` - connect straight to that data
      address (NAME is then only a label); no discovery at all.
    """

    name: str
    address: str | None = None
    hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, rest: str) -> Target:
        text = rest.strip()
        name, at, where = text.rpartition("@")
        if not at or not _ADDRESS.match(where):
            return cls(name=text)
        name = name.strip()
        if _ADDRESS.match(where).group(2):  # type: ignore[union-attr]
            return cls(name=name, address=where)
        return cls(name=name, hosts=(where.strip("[]"),))

    def label(self) -> str:
        if self.address:
            return f"{self.name or 'source'} at {self.address}"
        return repr(self.name) if self.name else "the first NDI source found"
