"""OSC on the wire: strict packet parsing and message building with python-osc, no sockets, no schema.

Why strictness: python-osc alone reads a truncated float as 0.0, skips type
tags it does not know and ignores trailing bytes. Here every message is
parsed by python-osc's :class:`OscMessage`, re-encoded by its
:class:`OscMessageBuilder` from the packet's own type tags, and must come
out byte for byte identical: anything truncated, padded wrongly or followed
by junk differs and becomes an :class:`OscInputError`. What a round trip
cannot see is checked directly: empty packets, bundle element framing,
bundle nesting depth and future timetags.

Bundles with a timetag in the future are rejected: dreamwire applies control
on arrival, and silently applying late-scheduled changes early would be worse
than saying so. Past or "immediately" timetags apply at once.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

SUPPORTED_TAGS = frozenset("ifhdsTFN[]")
"""What dreamwire reads: numbers, strings, booleans, nil and arrays (no blobs, colours, MIDI or timetags)."""

MAX_BUNDLE_DEPTH = 8
_BUNDLE = b"#bundle\0"
FUTURE_TOLERANCE_S = 0.02


class OscInputError(Exception):
    """A packet or message was rejected; ``address`` and ``reason`` become ``/dreamwire/error``."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address or '(packet)'}: {reason}")
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """One parsed message: its address, its arguments (arrays as lists) and its type tags (no comma)."""

    address: str
    args: list[Any]
    tags: str = ""


# --- parsing --------------------------------------------------------------------------------------------


def parse_packet(dgram: bytes, now: float | None = None) -> list[Message]:
    """Every message in a datagram, in order; raises :class:`OscInputError` for anything malformed."""
    return _parse(dgram, time.time() if now is None else now, 0)


def _parse(dgram: bytes, now: float, depth: int) -> list[Message]:
    if not dgram:
        raise OscInputError("", "empty datagram")
    if dgram.startswith(_BUNDLE):
        return _parse_bundle(dgram, now, depth)
    if dgram[:1] == b"/":
        return [_parse_message(dgram)]
    raise OscInputError("", f"not an OSC packet: starts with {dgram[:8]!r}, expected '/' or '#bundle'")


def _type_tags(dgram: bytes) -> tuple[str, str | None]:
    """(address, type tags without the comma, or None when the message has no type tag string)."""
    try:
        address, i = osc_types.get_string(dgram, 0)
        if i >= len(dgram):
            return address, None
        tags, _ = osc_types.get_string(dgram, i)
    except (osc_types.ParseError, UnicodeDecodeError) as exc:
        raise OscInputError("", f"malformed address or type tags: {exc}") from None
    if not tags.startswith(","):
        raise OscInputError(address, "type tag string must start with ','")
    return address, tags[1:]


def _parse_message(dgram: bytes) -> Message:
    address, tags = _type_tags(dgram)
    unsupported = sorted(set(tags or "") - SUPPORTED_TAGS)
    if unsupported:
        raise OscInputError(address, f"unsupported OSC type tag {unsupported[0]!r} (dreamwire reads "
                                     f"{''.join(sorted(SUPPORTED_TAGS))})")
    try:
        args = OscMessage(dgram).params
        canonical = osc_types.write_string(address) if tags is None else _encode(address, tags, args)
    except Exception as exc:  # python-osc raises ParseError, UnicodeDecodeError, struct.error, IndexError...
        raise OscInputError(address, f"malformed message: {exc}") from None
    if canonical != dgram:
        raise OscInputError(address, f"malformed message: {len(dgram)} bytes where type tags ',{tags}' encode "
                                     f"{len(canonical)} (truncated, wrongly padded or trailing data)")
    return Message(address, args, tags or "")


def _encode(address: str, tags: str, args: list[Any]) -> bytes:
    """The canonical bytes of a message with exactly these type tags and arguments."""
    builder = OscMessageBuilder(address)
    for value, tag in zip(args, _nest(tags), strict=True):
        builder.add_arg(value, arg_type=tag)
    return builder.build().dgram


def _nest(tags: str) -> list[Any]:
    """Type tags as the builder takes them: ``"f[is]"`` -> ``["f", ["i", "s"]]``."""
    stack: list[list[Any]] = [[]]
    for tag in tags:
        if tag == "[":
            stack.append([])
        elif tag == "]":
            if len(stack) < 2:
                raise ValueError(f"unbalanced ']' in type tags {tags!r}")
            inner = stack.pop()
            stack[-1].append(inner)
        else:
            stack[-1].append(tag)
    if len(stack) != 1:
        raise ValueError(f"unbalanced '[' in type tags {tags!r}")
    return stack[0]


def _parse_bundle(dgram: bytes, now: float, depth: int) -> list[Message]:
    if depth >= MAX_BUNDLE_DEPTH:
        raise OscInputError("#bundle", f"bundles nested deeper than {MAX_BUNDLE_DEPTH} levels")
    try:
        timetag, i = osc_types.get_date(dgram, len(_BUNDLE))
    except (osc_types.ParseError, struct.error) as exc:
        raise OscInputError("#bundle", f"bad timetag: {exc}") from None
    if timetag != osc_types.IMMEDIATELY and timetag > now + FUTURE_TOLERANCE_S:
        raise OscInputError("#bundle", f"timetag is {timetag - now:.3f} s in the future; dreamwire applies "
                                       "control on arrival: send bundles with timetag 'immediately'")
    out: list[Message] = []
    while i < len(dgram):
        if i + 4 > len(dgram):
            raise OscInputError("#bundle", "truncated element size")
        size = struct.unpack(">i", dgram[i:i + 4])[0]
        i += 4
        if size <= 0 or size % 4 or i + size > len(dgram):
            raise OscInputError("#bundle", f"element size {size} does not fit the {len(dgram)}-byte bundle")
        out.extend(_parse(dgram[i:i + size], now, depth + 1))
        i += size
    return out


# --- building -------------------------------------------------------------------------------------------


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
