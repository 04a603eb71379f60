"""Play a TOML cue list into a running dreamwire over OSC, on a BPM clock or an Ableton Link session.

    python examples/vj_cues.py examples/cues.toml                 # the file's bpm
    python examples/vj_cues.py examples/cues.toml --bpm 128 --port 7766
    python examples/vj_cues.py examples/cues.toml --link          # follow Link (pip install aalink)

Each ``[[cue]]`` has one time, ``bar`` (1-based, 4 beats a bar, fractions allowed),
``beat`` (0-based beats) or ``seconds``, counted from the start (with ``--link``:
from the next Link downbeat), and any of these actions, all sent in one OSC bundle
so they land on the same frame:

    prompt / strength / seed / any parameter = value     -> /dreamwire/<name> value
    set = { name = value, ... }                          -> the same, for several
    save = N                                             -> /dreamwire/scene/save N (after the cue's changes)
    scene = N, scene_time = 4, scene_unit = "beats"      -> /dreamwire/scene/recall N 4 beats
    morph = { name = "strength", target = 0.8, time = 4, curve = "ease", unit = "beats" }
                                                         -> /dreamwire/morph (a list of such tables for several)

At start the player sends ``/dreamwire/tempo <bpm>`` and a ``/dreamwire/beat`` tap (unless
``send_tempo = false``), so morphs in beats and ``quantize`` on the runtime follow the same
tempo and phase. A ``save`` snapshots the runtime once the cue's changes are in; in a
quantized runtime the changes wait for their beat, so save in a later cue.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BEATS_PER_BAR = 4
TIME_KEYS = ("bar", "beat", "seconds")
ACTION_KEYS = ("set", "save", "scene", "scene_time", "scene_unit", "morph", "name")


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


def _arg(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def read_cues(path: Path) -> tuple[dict[str, Any], list[Cue]]:
    """The file's settings and its cues in time order; raises ValueError naming the cue and key."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    settings = {k: v for k, v in data.items() if k != "cue"}
    bpm = float(settings.get("bpm", 120.0))
    cues = []
    for i, raw in enumerate(data.get("cue", []), start=1):
        where = f"{path}: cue {i}"
        times = [k for k in TIME_KEYS if k in raw]
        if len(times) != 1:
            raise ValueError(f"{where}: give exactly one of bar, beat or seconds")
        key = times[0]
        value = float(raw[key])
        beat = (value - 1.0) * BEATS_PER_BAR if key == "bar" else value if key == "beat" else None
        cue = Cue(i, beat, value if key == "seconds" else None, name=str(raw.get("name", "")))
        params = {k: v for k, v in raw.items() if k not in TIME_KEYS and k not in ACTION_KEYS}
        params.update(raw.get("set", {}))
        for name, v in params.items():
            cue.messages.append((name, [_arg(x) for x in v] if isinstance(v, list) else [_arg(v)]))
        morphs = raw.get("morph", [])
        for m in [morphs] if isinstance(morphs, dict) else morphs:
            try:
                args = [m["name"], _arg(m["target"]), float(m.get("time", 0.0)), m.get("curve", "linear"),
                        m.get("unit", "seconds")]
            except KeyError as exc:
                raise ValueError(f"{where}: morph needs {exc.args[0]!r}") from None
            cue.messages.append(("morph", args))
        if "scene" in raw:
            cue.messages.append(("scene/recall", [int(raw["scene"]), float(raw.get("scene_time", 0.0)),
                                                  raw.get("scene_unit", "seconds")]))
        if "save" in raw:
            cue.messages.append(("scene/save", [int(raw["save"])]))
        if not cue.messages:
            raise ValueError(f"{where}: no action (prompt, strength, seed, set, scene, save or morph)")
        cues.append(cue)
    cues.sort(key=lambda c: (c.due(bpm), c.index))
    return settings, cues


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
        self.t0 = time.monotonic()

    def wait_until(self, seconds: float) -> None:
        delay = self.t0 + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)


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

    def wait_until(self, seconds: float) -> None:
        target = self.origin + seconds * self.bpm / 60.0  # cue times were turned into seconds at the file bpm
        while True:
            left = (target - float(self.link.beat)) * 60.0 / self.bpm
            if left <= 0:
                return
            time.sleep(min(left, 0.005))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cues", type=Path, help="TOML cue list")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7766)
    p.add_argument("--prefix", default="/dreamwire")
    p.add_argument("--bpm", type=float, help="tempo (default: the file's bpm, else 120)")
    p.add_argument("--link", action="store_true", help="follow an Ableton Link session (needs aalink)")
    args = p.parse_args(argv)
    try:
        settings, cues = read_cues(args.cues)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"vj_cues: error: {exc}", file=sys.stderr)
        return 2
    bpm = args.bpm or float(settings.get("bpm", 120.0))
    client = SimpleUDPClient(args.host, args.port)
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
            client.send(bundle(args.prefix, [("tempo", [float(bpm)]), ("beat", [])]))
    print(f"vj_cues: {len(cues)} cues at {clock.bpm:g} bpm to {args.host}:{args.port}", flush=True)
    for cue in cues:
        due = cue.due(bpm)
        clock.wait_until(due)
        client.send(bundle(args.prefix, cue.messages))
        what = ", ".join(f"{a} {' '.join(map(str, v))}" for a, v in cue.messages)
        label = f" {cue.name}" if cue.name else ""
        print(f"cue {cue.index}{label} at {due:.2f}s: {what}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
