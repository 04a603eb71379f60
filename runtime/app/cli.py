"""``dreamwire`` command line: one argparse tree, ``run``, ``sources``, ``bench`` and ``build-engines``.

Every option of every subcommand is generated from a settings dataclass
(:class:`~dreamwire.app.config.RuntimeConfig` for ``run``, plus the live
parameters of the control schema), so ``--help`` lists each with its
default and nothing is declared twice. Anything the user got wrong (flag,
TOML, bridge name, busy port) ends in one ``dreamwire: error:`` line and
exit code 2; a run stopped by SIGINT/SIGTERM or ``--frames`` exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dreamwire import __version__
from dreamwire.app.build_engines import BuildOptions
from dreamwire.app.config import ConfigError, RuntimeConfig, load_toml, set_checked
from dreamwire.bench.options import BenchOptions
from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import SCHEMA, ParamSpec
from dreamwire.control.settings import default_of, flag_help, flag_of, settings_of, tables_of

COMMANDS = ("run", "sources", "bench", "build-engines")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument COMMAND: invalid choice"):
            wrong = message.split("'")[1] if "'" in message else message
            message = f"unknown command {wrong!r}; expected one of: {', '.join(COMMANDS)}"
        sys.stderr.write(f"dreamwire: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


# --- settings dataclasses -> flags -> settings ----------------------------------------------------------


def add_settings(parser: argparse.ArgumentParser, cls: type, table: str = "", title: str | None = None) -> None:
    """One flag per declared field of ``cls`` (and of its nested tables, as ``--<table>-<name>``)."""
    group = parser.add_argument_group(title) if title else parser
    for name, s in settings_of(cls):
        default = default_of(cls, name)
        kw: dict[str, Any] = {"dest": _dest(table, name), "default": None, "help": flag_help(cls, name, s)}
        if isinstance(default, bool):
            kw["action"] = "store_false" if default else "store_true"
        else:
            kw.update(metavar=s.metavar, choices=s.choices, type=s.parse)
            if s.repeat:
                kw["action"] = "append"
        group.add_argument(flag_of(cls, name, table), **kw)
    for name, doc, sub in tables_of(cls):
        add_settings(parser, sub, name, f"[{name}] {doc}")


def _dest(table: str, name: str) -> str:
    return f"{table}_{name}" if table else name


def apply_flags(ns: argparse.Namespace, target: Any, table: str = "") -> Any:
    """Set every flag the user gave on ``target`` (a settings dataclass), with the fields' own checks."""
    cls = type(target)
    for name, _ in settings_of(cls):
        value = getattr(ns, _dest(table, name), None)
        if value is not None:
            set_checked(target, name, value, flag_of(cls, name, table))
    for name, _, _ in tables_of(cls):
        apply_flags(ns, getattr(target, name), name)
    return target


def _add_control_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live parameters (initial values; same names as OSC and [control] in TOML)")
    for spec in SCHEMA:
        rng = f" [{spec.range_label}]" if spec.range_label != "-" else ""
        g.add_argument(_control_flag(spec), dest=f"ctl_{spec.name}", default=None, nargs=spec.kind.nargs,
                       metavar=spec.kind.metavar,
                       help=f"{spec.doc} ({spec.type_label}{rng}, default {spec.kind.describe_default(spec.default)})")


def _control_flag(spec: ParamSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dreamwire", description="Real-time diffusion for live visuals (StreamDiffusion method), "
                "steered over OSC.")
    p.add_argument("--version", action="version", version=f"dreamwire {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run the live runtime (default: tiny model, moving pattern in, PNG folder out)",
                         description="Run the live runtime: frames in from a bridge, through the engine, back out; "
                         "steer it over OSC. With no options: tiny model, moving test pattern in, PNGs in "
                         "./dreamwire-out, until Ctrl-C.")
    run.add_argument("--config", metavar="FILE.toml", help="TOML config; flags override it (default: none)")
    add_settings(run, RuntimeConfig)
    _add_control_flags(run)
    run.set_defaults(handler=_run)
    sources = sub.add_parser("sources", help="list the video senders the installed bridges can see (NDI, Spout)",
                             description="Lists NDI and Spout senders visible from this machine.")
    sources.set_defaults(handler=_sources)
    bench = sub.add_parser("bench", help="engine benchmarks as ratios measured within one run",
                           description="Stream batch vs sequential, RCFG vs CFG and the similarity filter, measured "
                           "in alternating rounds; optionally backends, loop overhead, or the offline GPU run.")
    add_settings(bench, BenchOptions)
    bench.set_defaults(handler=_bench)
    build = sub.add_parser("build-engines", help="export ONNX graphs and build TensorRT engines ahead of a show",
                           description="Export ONNX graphs and build TensorRT engines into the cache the backends "
                           "read, with a time/VRAM estimate first.")
    add_settings(build, BuildOptions)
    build.set_defaults(handler=_build)
    return p


def config_from_args(ns: argparse.Namespace) -> RuntimeConfig:
    """Defaults, then ``--config``, then flags; raises :class:`ConfigError`."""
    cfg = load_toml(ns.config) if ns.config else RuntimeConfig()
    apply_flags(ns, cfg)
    for spec in SCHEMA:
        raw = getattr(ns, f"ctl_{spec.name}")
        if raw is not None:
            try:
                cfg.control[spec.name] = spec.kind.read_cli(spec.name, raw)
            except ControlError as exc:
                raise ConfigError(f"{_control_flag(spec)}: {exc}") from None
    return cfg


# --- subcommands ------------------------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def _run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns)
    _setup_logging(cfg.log_level)
    from dreamwire.app.run import run

    return run(cfg)


def _sources(_ns: argparse.Namespace) -> int:
    from dreamwire.app.sources import print_sources

    return print_sources()


def _bench(ns: argparse.Namespace) -> int:
    from dreamwire.bench.main import main

    return main(apply_flags(ns, BenchOptions()))


def _build(ns: argparse.Namespace) -> int:
    from dreamwire.app.build_engines import main

    return main(apply_flags(ns, BuildOptions()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version, or a bad flag already reported in one line
        return int(exc.code or 0)
    handler: Callable[[argparse.Namespace], int] | None = getattr(ns, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(ns)
    except ConfigError as exc:
        print(f"dreamwire: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run installed its handlers
        print("dreamwire: interrupted", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The ``dreamwire`` executable: :func:`main`, then exit without tearing down the interpreter.

    Everything the command opened is closed by then (bridges, sockets, files, the NDI runtime). What
    is left is Python finalizing torch, diffusers and transformers, which takes one to two seconds and
    would make a show controller's stop (SIGINT) feel hung; so flush and leave at once.
    """
    rc = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
