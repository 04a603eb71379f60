"""Play a TOML cue list into a running dreamwire over OSC, on a BPM clock or an Ableton Link session.

    python examples/vj_cues.py examples/cues.toml                 # the file's bpm
    python examples/vj_cues.py examples/cues.toml --check         # only check the list; sends nothing
    python examples/vj_cues.py examples/cues.toml --bpm 128 --port 7766
    python examples/vj_cues.py examples/cues.toml --link          # follow Link (pip install aalink)

Each ``[[cue]]`` has one time, ``bar`` (1-based, 4 beats a bar, fractions allowed),
``beat`` (0-based beats) or ``seconds``, counted from the start (with ``--link``:
from the next Link downbeat), and any of these actions, all sent in one OSC bundle
so they land on the same frame:

    prompt / strength / seed / any parameter = value     -> /dreamwire/<name> value
    prompt_blend = [["city", 0.7], ["forest", 0.3]]      -> lists as in docs/osc.md (pairs or flat)
    set = { name = value, ... }                          -> the same, for several
    save = N                                             -> /dreamwire/scene/save N (after the cue's changes)
    scene = N, scene_time = 4, scene_unit = "beats"      -> /dreamwire/scene/recall N 4 beats
    morph = { name = "strength", target = 0.8, time = 4, curve = "ease", unit = "beats" }
                                                         -> /dreamwire/morph (a list of such tables for several)

Before anything is sent, the whole list is checked against dreamwire's control schema (the
installed ``dreamwire`` package: every parameter, range and command as the runtime reads them):
a typo, an out-of-range value or a bad morph is reported with its cue, and nothing plays
(exit 2). A recall of a scene no earlier cue saves is a warning: it plays only if the runtime's
``--scenes`` file has it. ``--check`` stops after the check.

While playing, the player listens where the runtime sends its errors (its telemetry target,
127.0.0.1:7767 unless ``dreamwire run --telemetry`` says otherwise; ``--listen`` here must match,
``--listen off`` to not listen) and prints each ``/dreamwire/error`` next to the cue that caused it.
After the last cue it asks for ``/dreamwire/status`` (waiting while quantized changes are held), so
late errors are heard too. Exit 1 when any cue failed.

At start the player sends ``/dreamwire/tempo <bpm>`` and a ``/dreamwire/beat`` tap (unless
``send_tempo = false``), so morphs in beats and ``quantize`` on the runtime follow the same
tempo and phase. A ``save`` snapshots the runtime once the cue's changes are in; in a
quantized runtime the changes wait for their beat, so save in a later cue.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import select
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BEATS_PER_BAR = 4
TIME_KEYS = ("bar", "beat", "seconds")
ACTION_KEYS = ("set", "save", "scene", "scene_time", "scene_unit", "morph", "name")
SETTINGS = ("bpm", "send_tempo")
DEFAULT_LISTEN_PORT = 7767  # dreamwire's default telemetry target, where its errors go (docs/osc.md)
COMMANDS = ("morph", "scene/recall", "scene/save")  # the non-parameter addresses a cue can send


@dataclass
class Cue:
    index: int
    beat: float | None  # when, in beats from the start ...
    seconds: float | None  # ... or in seconds
    messages: list[tuple[str, list[Any]]] = field(default_factory=list)
    name: str = ""

    def due(self, bpm: float) -> float:
        """Seconds from the start."""
        return self.seconds if self.seconds is not None else self.beat * 60.0 / bpm

    @property
    def label(self) -> str:
        return f"cue {self.index}" + (f" {self.name}" if self.name else "")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the list, named by its cue (0 = the file's settings)."""

    cue: int
    text: str
    fatal: bool = True

    def __str__(self) -> str:
        where = f"cue {self.cue}" if self.cue else "settings"
        return f"{where}: {'error' if self.fatal else 'warning'}: {self.text}"


@dataclass(frozen=True)
class Schema:
    """What the runtime accepts: one reader per parameter name (aliases too) and per command.

    Each reader takes a message's OSC arguments and raises ValueError naming the problem, exactly as
    the runtime's OSC handler does, because they are the runtime's own readers.
    """

    params: Mapping[str, Callable[[Sequence[Any]], Any]]
    commands: Mapping[str, Callable[[Sequence[Any]], Any]]


def dreamwire_schema() -> Schema:
    """The installed dreamwire's control schema and command table; ImportError without dreamwire."""
    from dreamwire.control.commands import COMMANDS as RUNTIME_COMMANDS
    from dreamwire.control.schema import SCHEMA

    params: dict[str, Callable[[Sequence[Any]], Any]] = {}
    for spec in SCHEMA:
        for name in (spec.name, *spec.aliases):
            params[name] = lambda args, s=spec: s.kind.read_osc(s.name, list(args))
    readers = {c.address: c.read for c in RUNTIME_COMMANDS}
    return Schema(params, {a: readers[a] for a in (*COMMANDS, "tempo")})


def _arg(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def _args(value: Any) -> list[Any]:
    """A TOML value as flat OSC arguments: lists of pairs (``[["city", 0.7], ...]``) are flattened."""
    if not isinstance(value, list):
        return [_arg(value)]
    flat: list[Any] = []
    for item in value:
        if isinstance(item, list):
            flat.extend(_arg(x) for x in item)
        else:
            flat.append(_arg(item))
    return flat


def read_cues(path: Path) -> tuple[dict[str, Any], list[Cue], list[Problem]]:
    """The file's settings, its cues in time order, and every problem in the file's shape.

    Raises OSError or TOMLDecodeError for a file that cannot be read at all.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    settings = {k: v for k, v in data.items() if k != "cue"}
    problems: list[Problem] = []
    bpm = settings.get("bpm", 120.0)
    bpm = float(bpm) if isinstance(bpm, (int, float)) and not isinstance(bpm, bool) and bpm > 0 else 120.0
    cues = []
    for i, raw in enumerate(data.get("cue", []), start=1):
        times = [k for k in TIME_KEYS if k in raw]
        if len(times) != 1:
            problems.append(Problem(i, "give exactly one of bar, beat or seconds"))
            continue
        key = times[0]
        if isinstance(raw[key], bool) or not isinstance(raw[key], (int, float)):
            problems.append(Problem(i, f"{key} must be a number, got {raw[key]!r}"))
            continue
        value = float(raw[key])
        beat = (value - 1.0) * BEATS_PER_BAR if key == "bar" else value if key == "beat" else None
        cue = Cue(i, beat, value if key == "seconds" else None, name=str(raw.get("name", "")))
        params = {k: v for k, v in raw.items() if k not in TIME_KEYS and k not in ACTION_KEYS}
        extra = raw.get("set", {})
        if not isinstance(extra, dict):
            problems.append(Problem(i, "set must be a table: set = { name = value, ... }"))
            extra = {}
        params.update(extra)
        for name, v in params.items():
            cue.messages.append((name, _args(v)))
        morphs = raw.get("morph", [])
        for m in [morphs] if isinstance(morphs, dict) else morphs:
            if not isinstance(m, dict):
                problems.append(Problem(i, "morph must be a table { name, target, time, ... } or a list of them"))
                continue
            unknown = sorted(set(m) - {"name", "target", "time", "curve", "unit"})
            missing = [k for k in ("name", "target") if k not in m]
            if unknown or missing:
                problems.append(Problem(i, "morph: " + "; ".join(
                    [f"needs {k!r}" for k in missing] + [f"unknown key {k!r}" for k in unknown])))
                continue
            cue.messages.append(("morph", [m["name"], _arg(m["target"]), _arg(m.get("time", 0.0)),
                                           m.get("curve", "linear"), m.get("unit", "seconds")]))
        if "scene" in raw:
            cue.messages.append(("scene/recall", [_arg(raw["scene"]), _arg(raw.get("scene_time", 0.0)),
                                                  raw.get("scene_unit", "seconds")]))
        elif "scene_time" in raw or "scene_unit" in raw:
            problems.append(Problem(i, "scene_time and scene_unit need scene = N"))
        if "save" in raw:
            cue.messages.append(("scene/save", [_arg(raw["save"])]))
        if not cue.messages:
            problems.append(Problem(i, "no action (prompt, strength, seed, set, scene, save or morph)"))
            continue
        cues.append(cue)
    cues.sort(key=lambda c: (c.due(bpm), c.index))
    return settings, cues, problems


def _unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter {name!r}{hint}; see docs/osc.md"


def check_cues(settings: Mapping[str, Any], cues: Sequence[Cue], schema: Schema) -> list[Problem]:
    """Every message of every cue read the way the runtime reads it; nothing stops at the first problem."""
    problems: list[Problem] = []
    for key in settings:
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, SETTINGS, n=1)
            problems.append(Problem(0, f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                     else f"; settings are {', '.join(SETTINGS)}")))
    if "bpm" in settings:
        try:
            schema.commands["tempo"]([settings["bpm"]])
        except ValueError as exc:
            problems.append(Problem(0, str(exc)))
    if not isinstance(settings.get("send_tempo", True), bool):
        problems.append(Problem(0, f"send_tempo must be true or false, got {settings['send_tempo']!r}"))
    known = [*schema.params, *ACTION_KEYS, *TIME_KEYS]
    saved: set[int] = set()
    for cue in cues:
        saves = set()
        for address, args in cue.messages:
            reader = schema.commands.get(address) or schema.params.get(address)
            if reader is None:
                problems.append(Problem(cue.index, _unknown(address, known)))
                continue
            try:
                request = reader(args)
            except ValueError as exc:
                problems.append(Problem(cue.index, str(exc)))
                continue
            if address == "scene/recall" and request.n not in saved:
                problems.append(Problem(cue.index, f"scene {request.n} is not saved by an earlier cue: it plays "
                                        "only if the runtime's --scenes file has it", fatal=False))
            if address == "scene/save":
                saves.add(request.n)
        saved |= saves  # a recall is checked before the same cue's save lands, as in the runtime
    return sorted(problems, key=lambda p: p.cue)


def bundle(prefix: str, messages: list[tuple[str, list[Any]]]) -> Any:
    b = OscBundleBuilder(IMMEDIATELY)
    for address, args in messages:
        m = OscMessageBuilder(f"{prefix}/{address}")
        for a in args:
            m.add_arg(a)
        b.add_content(m.build())
    return b.build()


class BpmClock:
    """Seconds since start on this machine's monotonic clock, at a fixed tempo."""

    def __init__(self, bpm: float) -> None:
        self.bpm = bpm
        self.t0 = time.perf_counter()

    poll = 0.05  # most seconds between looks at the clock (errors are heard meanwhile)

    def left(self, seconds: float) -> float:
        """Seconds until ``seconds`` after the start."""
        return self.t0 + seconds - time.perf_counter()


class LinkClock:
    """Beats on an Ableton Link timeline (aalink: Link(bpm, loop), .enabled, .quantum, .beat, .tempo),
    counted from the next downbeat after start."""

    def __init__(self, bpm: float) -> None:
        import asyncio

        from aalink import Link

        self._loop = asyncio.new_event_loop()
        self.link = Link(bpm, self._loop)
        self.link.quantum = BEATS_PER_BAR
        self.link.enabled = True
        beat = float(self.link.beat)
        self.origin = (beat // BEATS_PER_BAR + 1) * BEATS_PER_BAR

    @property
    def bpm(self) -> float:
        return float(self.link.tempo)

    poll = 0.005  # the session's tempo may change at any time: look often

    def left(self, seconds: float) -> float:
        target = self.origin + seconds * self.bpm / 60.0  # cue times were turned into seconds at the file bpm
        return (target - float(self.link.beat)) * 60.0 / self.bpm


class Wire:
    """The player's sockets: one sends cues and gets status replies, one hears the runtime's errors."""

    def __init__(self, target: tuple[str, int], listen: tuple[str, int] | None, prefix: str) -> None:
        self.target = target
        self.prefix = prefix
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx: socket.socket | None = None
        if listen is not None:
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.rx.bind(listen)
            except OSError:
                self.close()
                raise

    def send(self, packet: Any) -> None:
        self.tx.sendto(packet.dgram, self.target)

    def wait(self, timeout: float) -> tuple[list[tuple[str, str]], dict[str, list[Any]] | None]:
        """Wait up to ``timeout`` s for the next datagram: (errors heard, a status reply or None)."""
        socks = [self.tx] + ([self.rx] if self.rx else [])
        ready, _, _ = select.select(socks, [], [], max(0.0, timeout))
        errors: list[tuple[str, str]] = []
        status = None
        for s in ready:
            dgram = s.recv(65535)
            try:
                messages = OscPacket(dgram).messages
            except ParseError:
                continue  # not OSC: nothing this player asked for
            if s is self.tx:
                status = {m.message.address: list(m.message.params) for m in messages}
            else:
                errors += [(str(m.message.params[0]), str(m.message.params[1])) for m in messages
                           if m.message.address == f"{self.prefix}/error" and len(m.message.params) >= 2]
        return errors, status

    def close(self) -> None:
        self.tx.close()
        if self.rx is not None:
            self.rx.close()


class Player:
    """Sends cues in time and pins each error the runtime reports on the cue that sent its address."""

    def __init__(self, wire: Wire, prefix: str) -> None:
        self.wire = wire
        self.prefix = prefix
        self.sent: list[Cue] = []
        self.failed: dict[int, Cue] = {}

    def play(self, cue: Cue, due: float) -> None:
        self.wire.send(bundle(self.prefix, cue.messages))
        self.sent.append(cue)
        what = ", ".join(f"{a} {' '.join(map(str, v))}" for a, v in cue.messages)
        print(f"{cue.label} at {due:.2f}s: {what}", flush=True)

    def listen(self, seconds: float) -> dict[str, list[Any]] | None:
        """Report errors for ``seconds``; the first status reply, if one came."""
        deadline = time.perf_counter() + seconds
        status = None
        while True:
            errors, reply = self.wire.wait(deadline - time.perf_counter())
            for address, reason in errors:
                self.report(address, reason)
            status = status or reply
            if status is not None or time.perf_counter() >= deadline:
                return status

    def report(self, address: str, reason: str) -> None:
        cue = self.culprit(address)
        if cue is None:
            print(f"runtime: error: {address}: {reason}", flush=True)
            return
        self.failed[cue.index] = cue
        print(f"{cue.label}: error: {address}: {reason}", flush=True)

    def culprit(self, address: str) -> Cue | None:
        """The latest cue that sent ``address``; the runtime's own addresses (engine ...) belong to none.

        A quantized change that fails when it lands is reported as ``quantize``: the latest cue is the
        best guess. Errors another client caused at the same runtime find no cue unless it sent the
        same address.
        """
        name = address.removeprefix(f"{self.prefix}/")
        for cue in reversed(self.sent):
            if name == "quantize" or any(a == name for a, _ in cue.messages):
                return cue
        return None

    def settle(self, timeout: float = 5.0) -> bool:
        """Ask for status until no quantized change is held, so errors of the last cues are heard too.

        The runtime answers packets in order on one thread, and it sends the errors of earlier packets
        before it answers a later status request; so once the reply is here, so are those errors.
        """
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.wire.send(bundle(self.prefix, [("status", [])]))
            status = self.listen(min(1.0, max(0.0, deadline - time.perf_counter())))
            if status is not None and not (status.get(f"{self.prefix}/state/held") or [0])[0]:
                self.listen(0.05)  # a reply overtook an error sent from another socket: give it a moment
                return True
            self.listen(0.2)
        return False


def parse_listen(value: str, host: str) -> tuple[str, int] | None:
    """``off``, ``PORT`` or ``HOST:PORT``; a bare port listens on loopback when the runtime is local."""
    if value.strip().lower() == "off":
        return None
    where, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen expects PORT, HOST:PORT or off, got {value!r}")
    if not where:
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        where = "127.0.0.1" if local else "0.0.0.0"
    return where, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cues", type=Path, help="TOML cue list")
    p.add_argument("--check", action="store_true", help="check the list against dreamwire's schema; send nothing")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7766)
    p.add_argument("--listen", default=str(DEFAULT_LISTEN_PORT), metavar="[HOST:]PORT|off",
                   help="where to hear the runtime's /dreamwire/error: its --telemetry target (default: %(default)s)")
    p.add_argument("--prefix", default="/dreamwire")
    p.add_argument("--bpm", type=float, help="tempo (default: the file's bpm, else 120)")
    p.add_argument("--link", action="store_true", help="follow an Ableton Link session (needs aalink)")
    args = p.parse_args(argv)
    try:
        settings, cues, problems = read_cues(args.cues)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"vj_cues: error: {args.cues}: {exc}", file=sys.stderr)
        return 2
    try:
        schema = dreamwire_schema()
    except ImportError:
        print("vj_cues: error: cannot check the cue list: dreamwire is not installed here (pip install dreamwire)",
              file=sys.stderr)
        return 2
    if args.bpm is not None:
        settings = {**settings, "bpm": args.bpm}
    problems += check_cues(settings, cues, schema)
    for problem in sorted(problems, key=lambda p: p.cue):
        print(f"{args.cues}: {problem}", file=sys.stderr)
    errors = sum(p.fatal for p in problems)
    if errors:
        print(f"vj_cues: {errors} error(s) in {args.cues}; nothing sent", file=sys.stderr)
        return 2
    if args.check:
        print(f"vj_cues: {args.cues}: {len(cues)} cues OK", flush=True)
        return 0
    bpm = float(settings.get("bpm", 120.0))
    try:
        listen = parse_listen(args.listen, args.host)
        wire = Wire((args.host, args.port), listen, args.prefix)
    except (argparse.ArgumentTypeError, OSError) as exc:
        print(f"vj_cues: error: cannot listen for errors on {args.listen}: {exc} (another telemetry listener? "
              "give --listen PORT and dreamwire run --telemetry 127.0.0.1:PORT, or --listen off)", file=sys.stderr)
        return 2
    try:
        return _play(args, settings, cues, bpm, wire, listen)
    finally:
        wire.close()


def _play(args: argparse.Namespace, settings: Mapping[str, Any], cues: Sequence[Cue], bpm: float, wire: Wire,
          listen: tuple[str, int] | None) -> int:
    player = Player(wire, args.prefix)
    if args.link:
        try:
            clock: BpmClock | LinkClock = LinkClock(bpm)
        except ImportError:
            print("vj_cues: error: --link needs aalink: pip install aalink", file=sys.stderr)
            return 2
    else:
        clock = BpmClock(bpm)
        if settings.get("send_tempo", True):
            # the tempo, and a tap now: the runtime's beat grid then has this player's phase, so a quantized
            # runtime lands each cue on the beat it was sent for
            wire.send(bundle(args.prefix, [("tempo", [float(bpm)]), ("beat", [])]))
    heard = f"errors heard on {listen[0]}:{listen[1]}" if listen else "not listening for errors"
    print(f"vj_cues: {len(cues)} cues at {clock.bpm:g} bpm to {args.host}:{args.port}; {heard}", flush=True)
    for cue in cues:
        due = cue.due(bpm)
        while (left := clock.left(due)) > 0:
            player.listen(min(left, clock.poll))
        player.play(cue, due)
    if listen is not None and not player.settle():
        print("vj_cues: warning: no /dreamwire/status reply: errors of the last cues may be missing",
              file=sys.stderr)
    if player.failed:
        print(f"vj_cues: {len(player.failed)} of {len(cues)} cues failed: "
              f"{', '.join(map(str, sorted(player.failed)))}", file=sys.stderr)
        return 1
    print(f"vj_cues: {len(cues)} cues played" + (", no errors" if listen else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
