"""A live terminal dashboard of dreamwire's telemetry: fps, latency, engine ms, health and the last error.

    python examples/osc_monitor.py                    # listens on 127.0.0.1:7767, dreamwire's default target
    python examples/osc_monitor.py --port 9000 --seconds 30
    python examples/osc_monitor.py --once             # print the first stats push and exit

dreamwire pushes ``/dreamwire/stats/<name> f`` and ``/dreamwire/health s s`` about once a
second, and ``/dreamwire/error s s`` for every rejected message, to its telemetry target
(``--telemetry HOST:PORT``). On a terminal the dashboard redraws in place; piped, it prints
one line per push.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from pythonosc.osc_packet import OscPacket, ParseError

SHOWN = ("fps", "latency_ms", "engine_ms", "delay_frames", "dropped", "skip_rate", "frames", "errors")


class Board:
    """The latest value of everything the runtime reported."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.stats: dict[str, float] = {}
        self.health = ("?", "")
        self.last_error: tuple[str, str] | None = None
        self.errors_seen = 0

    def feed(self, address: str, args: list[Any]) -> bool:
        """Take one message; True when it was a stats push (a full update follows in the same bundle)."""
        if address.startswith(f"{self.prefix}/stats/") and args:
            self.stats[address.rsplit("/", 1)[1]] = float(args[0])
            return True
        if address == f"{self.prefix}/health" and len(args) >= 2:
            self.health = (str(args[0]), str(args[1]))
        elif address == f"{self.prefix}/error" and len(args) >= 2:
            self.last_error = (str(args[0]), str(args[1]))
            self.errors_seen += 1
        return False

    def line(self) -> str:
        s = self.stats
        err = f"{self.last_error[0]}: {self.last_error[1]}" if self.last_error else "-"
        return (f"fps {s.get('fps', 0):6.1f} | latency {s.get('latency_ms', 0):7.1f} ms | engine "
                f"{s.get('engine_ms', 0):6.1f} ms | health {self.health[0]} | last error {err}")

    def screen(self) -> str:
        err = f"{self.last_error[0]}: {self.last_error[1]}" if self.last_error else "-"
        rows = [f"dreamwire telemetry  {time.strftime('%H:%M:%S')}", ""]
        rows += [f"  {name:<13}{self.stats.get(name, 0.0):>12.2f}" for name in SHOWN]
        rows += ["", f"  health       {self.health[0]}  {self.health[1]}",
                 f"  last error   {err}  ({self.errors_seen} seen)"]
        return "\n".join(rows)


def messages(dgram: bytes) -> list[tuple[str, list[Any]]]:
    try:
        return [(m.message.address, list(m.message.params)) for m in OscPacket(dgram).messages]
    except ParseError:
        return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=7767, help="dreamwire's telemetry port")
    p.add_argument("--prefix", default="/dreamwire")
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.add_argument("--once", action="store_true", help="print the first stats push and exit")
    args = p.parse_args(argv)
    board = Board(args.prefix)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"osc_monitor: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.settimeout(0.2)
    tty = sys.stdout.isatty() and not args.once
    deadline = None if args.seconds is None else time.perf_counter() + args.seconds
    print(f"osc_monitor: listening on {args.host}:{args.port}", flush=True)
    try:
        while deadline is None or time.perf_counter() < deadline:
            try:
                dgram = sock.recv(65535)
            except TimeoutError:
                continue
            pushed = False
            for address, values in messages(dgram):
                pushed = board.feed(address, values) or pushed
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + board.screen() + "\n")
                sys.stdout.flush()
            else:
                print(board.line(), flush=True)
            if args.once and pushed:
                return 0
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
