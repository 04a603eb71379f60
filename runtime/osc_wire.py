"""OSC on the wire: strict packet parsing, argument decoding and message building, no sockets.

Why the parsing is our own: python-osc silently drops datagrams it cannot
parse, reads a truncated float as 0.0 and hands wrong types straight to
handlers. Each datagram is checked here (type tags against payload length,
bundle element sizes) before python-osc's own parser sees it, so every bad
packet becomes an :class:`OscInputError` the server can report.

Bundles with a timetag in the future are rejected: dreamwire applies control
on arrival, and silently applying late-scheduled changes early would be worse
than saying so. Past or "immediately" timetags apply at once.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from runtime.control import ControlError, ParamSpec, validate

DEFAULT_TELEMETRY_PORT = 7767
LIST_KINDS = ("prompt_pairs", "seed_pairs", "index_list")
_FIXED = {"i": 4, "f": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}
_EMPTY = set("TFN[]")
_BUNDLE = b"#bundle\0"
FUTURE_TOLERANCE_S = 0.02


class OscInputError(Exception):
    """A packet or message was rejected; ``address`` and ``reason`` become ``/dreamwire/error``."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address or '(packet)'}: {reason}")
        self.address = address
        self.reason = reason


# --- strict packet parsing --------------------------------------------------------------------------


def check_message_layout(dgram: bytes) -> str:
    """Return the address if the type tags account for exactly the payload bytes, else raise."""
    try:
        address, i = osc_types.get_string(dgram, 0)
    except (osc_types.ParseError, UnicodeDecodeError) as exc:
        raise OscInputError("", f"malformed address: {exc}") from None
    if not address.startswith("/"):
        raise OscInputError("", "address must start with '/'")
    if i == len(dgram):
        return address
    try:
        tags, i = osc_types.get_string(dgram, i)
    except (osc_types.ParseError, UnicodeDecodeError) as exc:
        raise OscInputError(address, f"malformed type tag string: {exc}") from None
    if not tags.startswith(","):
        raise OscInputError(address, "type tag string must start with ','")
    depth = 0
    for tag in tags[1:]:
        try:
            if tag in _FIXED:
                i += _FIXED[tag]
            elif tag == "s":
                _, i = osc_types.get_string(dgram, i)
            elif tag == "b":
                _, i = osc_types.get_blob(dgram, i)
            elif tag in _EMPTY:
                depth += {"[": 1, "]": -1}.get(tag, 0)
                if depth < 0:
                    raise OscInputError(address, "unbalanced ']' in type tags")
            else:
                raise OscInputError(address, f"unsupported OSC type tag {tag!r}")
        except (osc_types.ParseError, UnicodeDecodeError) as exc:
            raise OscInputError(address, f"argument {tag!r} is malformed: {exc}") from None
        if i > len(dgram):
            raise OscInputError(address, f"argument data truncated: type tags {tags!r} need more than "
                                         f"the {len(dgram)} bytes sent")
    if depth:
        raise OscInputError(address, "unbalanced '[' in type tags")
    if i != len(dgram):
        raise OscInputError(address, f"{len(dgram) - i} bytes after the last argument of {tags!r}")
    return address


def parse_packet(dgram: bytes, now: float | None = None) -> list[tuple[str, list[Any]]]:
    """Every message in a datagram as ``(address, args)``, in order; raises :class:`OscInputError`."""
    now = time.time() if now is None else now
    if not dgram:
        raise OscInputError("", "empty datagram")
    if dgram.startswith(_BUNDLE):
        return _parse_bundle(dgram, now)
    if dgram[:1] == b"/":
        address = check_message_layout(dgram)
        try:
            return [(address, OscMessage(dgram).params)]
        except Exception as exc:  # python-osc raises several types; any is a malformed message
            raise OscInputError(address, f"malformed message: {exc}") from None
    raise OscInputError("", f"not an OSC packet: starts with {dgram[:8]!r}, expected '/' or '#bundle'")


def _parse_bundle(dgram: bytes, now: float) -> list[tuple[str, list[Any]]]:
    try:
        timetag, i = osc_types.get_date(dgram, len(_BUNDLE))
    except (osc_types.ParseError, struct.error) as exc:
        raise OscInputError("#bundle", f"bad timetag: {exc}") from None
    if timetag != osc_types.IMMEDIATELY and timetag > now + FUTURE_TOLERANCE_S:
        raise OscInputError("#bundle", f"timetag is {timetag - now:.3f} s in the future; dreamwire applies "
                                       "control on arrival: send bundles with timetag 'immediately'")
    out: list[tuple[str, list[Any]]] = []
    while i < len(dgram):
        if i + 4 > len(dgram):
            raise OscInputError("#bundle", "truncated element size")
        size = struct.unpack(">i", dgram[i:i + 4])[0]
        i += 4
        if size <= 0 or size % 4 or i + size > len(dgram):
            raise OscInputError("#bundle", f"element size {size} does not fit the {len(dgram)}-byte bundle")
        out.extend(parse_packet(dgram[i:i + size], now))
        i += size
    return out


# --- argument decoding and replies ----------------------------------------------------------------


def decode_args(spec: ParamSpec, args: list[Any]) -> Any:
    """OSC arguments -> a validated value. Lists arrive flat (``text, weight, text, weight``) or as one array."""
    if spec.kind in LIST_KINDS:
        if len(args) == 1 and isinstance(args[0], list):
            args = args[0]
        return validate(spec.name, list(args))
    if len(args) != 1:
        raise ControlError(f"{spec.name}: expected 1 argument, got {len(args)}")
    return validate(spec.name, args[0])


def encode_value(value: Any) -> list[Any]:
    """A parameter value as flat OSC arguments (bools as 0/1 ints, which every OSC tool reads)."""
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, tuple):
        flat: list[Any] = []
        for item in value:
            flat.extend(item if isinstance(item, tuple) else (item,))
        return flat
    return [value]


def build_message(address: str, args: Iterable[Any]) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(float(a) if isinstance(a, float) else a)
    return builder.build().dgram


def build_bundle(messages: list[bytes]) -> bytes:
    builder = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        builder.add_content(OscMessage(m))
    return builder.build().dgram


def parse_target(text: str) -> tuple[str, int] | None:
    """``"HOST:PORT"`` -> ``(host, port)``; ``"off"`` -> ``None``. Raises ValueError with a clear message."""
    if text.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:{DEFAULT_TELEMETRY_PORT}) or 'off', got {text!r}")
    return host, int(port)
