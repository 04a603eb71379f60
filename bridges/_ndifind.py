"""Finding NDI sources without mDNS: one query reaches one process, so ask enough addresses.

Measured on Linux with ndi-python 6.3.2 in private network namespaces (no avahi daemon):

* mDNS finds nothing without an avahi daemon, so finders also ask IPs directly
  (``FindCreate.extra_ips``): the finder opens a TCP connection to port 5960
  of each and that process answers with *its own* senders.
* Every NDI process listens on ``0.0.0.0:5960`` with SO_REUSEPORT, so the
  kernel hands each connection to one of them, picked by a hash of the
  connection's addresses. One query to ``127.0.0.1`` therefore lists one
  process's senders: with dreamwire's own NDI sink up, the other local sender
  was missed 13 times in 20.
* On Linux all of 127.0.0.0/8 is loopback, and every address is another
  connection, so another draw. Asking ``127.0.0.1 .. 127.0.0.N`` reaches every
  one of K local NDI processes with probability at least ``1 - K·(1-1/K)^N``;
  K is counted from the listening sockets in ``/proc/net/tcp*`` and N chosen
  for a miss chance under 1e-4 (K=3: N=26; all found within about 3 ms).
* A finder's connections stay with the processes they first reached. When a
  sender process dies, the finder re-dials its lost connections within about
  0.4 s, onto whichever processes are up then; a sender that starts later
  (3 s later, measured) is never listed by it. So a source that is being looked
  for gets a fresh probe every ``refind_interval`` (:class:`Finder`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from dreamwire.bridges import _ndilib
from dreamwire.bridges._common import Every
from dreamwire.bridges.base import BridgeError

LOOPBACK = "127.0.0.1"
MESSAGING_PORT = 5960  # NDI's per-process discovery/messaging port
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def listeners(port: int = MESSAGING_PORT, tables: Iterable[str] = _TCP_TABLES) -> int | None:
    """How many sockets listen on TCP ``port`` in this network namespace (one per NDI process), or None."""
    count, readable = 0, False
    for table in tables:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == _LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                count += 1
    return count if readable else None


def loopback_fanout(processes: int | None, miss: float = 1e-4, limit: int = 254) -> list[str]:
    """``127.0.0.1 .. 127.0.0.N`` with N large enough that each of ``processes`` answers one (Linux only)."""
    if not sys.platform.startswith("linux") or not processes or processes <= 1:
        return [LOOPBACK]
    count = math.ceil(math.log(miss / processes) / math.log(1 - 1 / processes))  # K·(1-1/K)^N <= miss
    return [f"127.0.0.{i}" for i in range(1, min(max(count, 1), limit) + 1)]


def discovery_ips(extra_ips: str | Iterable[str] | None, hosts: Iterable[str] = (),
                  loopback: list[str] | None = None) -> list[str]:
    """Loopback first (fanned out, see :func:`loopback_fanout`), then the user's IPs and hosts."""
    if isinstance(extra_ips, str):
        extra_ips = extra_ips.split(",")
    if loopback is None:
        loopback = loopback_fanout(listeners())
    ips = [*loopback, *(extra_ips or ()), *hosts]
    return list(dict.fromkeys(ip.strip() for ip in ips if ip and ip.strip()))


def describe(ips: list[str]) -> str:
    """``127.0.0.1-127.0.0.31, studio`` rather than 32 addresses in a log line."""
    fanned = [ip for ip in ips if ip.startswith("127.0.0.")]
    rest = [ip for ip in ips if ip not in fanned]
    head = [f"{fanned[0]}-{fanned[-1]}" if len(fanned) > 1 else fanned[0]] if fanned else []
    return ", ".join(head + rest)


def make_finder(lib: ModuleType, ips: list[str]) -> Any:
    settings = lib.FindCreate()
    settings.show_local_sources = True
    if ips:
        settings.extra_ips = ",".join(ips)
    finder = lib.find_create_v2(settings)
    if finder is None:
        raise BridgeError("NDI could not create a source finder")
    return finder


def sources(lib: ModuleType, finder: Any) -> list[tuple[str, str]]:
    """``[(ndi_name, url_address), ...]`` as copies: the SDK's list is only valid until the next call."""
    return [(str(s.ndi_name), str(s.url_address or "")) for s in lib.find_get_current_sources(finder)]


class Finder:
    """Looks sources up for one NDI source: a lasting finder plus, while looking, fresh local probes.

    The lasting finder (mDNS, the user's IPs and hosts, ``127.0.0.1``) lives as
    long as the source, so mDNS answers, which take about a second, accumulate.
    While the source is looking, a probe that also fans out over loopback is
    made afresh every ``refind_interval``: it reaches a sender process that
    started after the last one. Probe answers come first: they are the newest.
    """

    def __init__(self, lib: ModuleType, extra_ips: str | Iterable[str] | None, hosts: Iterable[str],
                 refind_interval: float) -> None:
        self._lib = lib
        self._remote = discovery_ips(extra_ips, hosts, loopback=[])
        self._refind = Every(refind_interval)
        self._probe: Any = None
        self.ips = discovery_ips(self._remote)
        self._lasting = make_finder(lib, [LOOPBACK, *self._remote])

    def found(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """``(probe's sources, lasting finder's sources)``; a fresh probe is made first when one is due."""
        due = self._refind.due()  # evaluated every call, so a first probe also starts the interval
        if self._probe is None or due:
            self.pause()
            self.ips = discovery_ips(self._remote)
            self._probe = make_finder(self._lib, self.ips)
            self._lib.find_wait_for_sources(self._probe, 20)  # local answers take a few ms
        return sources(self._lib, self._probe), sources(self._lib, self._lasting)

    def pause(self) -> None:
        """Drop the probe (nothing is looked for while connected); the lasting finder stays."""
        if self._probe is not None:
            self._lib.find_destroy(self._probe)
            self._probe = None

    def close(self) -> None:
        self.pause()
        self._refind.reset()
        if self._lasting is not None:
            self._lib.find_destroy(self._lasting)
            self._lasting = None


def list_senders(timeout: float = 1.0) -> list[str]:
    """Full names (``MACHINE (Name)``) of the NDI sources visible within ``timeout`` seconds."""
    lib = _ndilib.load()
    _ndilib.acquire(lib)
    finder = None
    try:
        finder = make_finder(lib, discovery_ips(None))
        deadline = time.perf_counter() + max(0.0, timeout)
        while (left := deadline - time.perf_counter()) > 0:
            lib.find_wait_for_sources(finder, max(1, int(left * 1000)))
        return sorted({name for name, _ in sources(lib, finder)})
    finally:
        if finder is not None:
            lib.find_destroy(finder)
        _ndilib.release(lib)
