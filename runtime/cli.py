"""``dreamwire`` command line: ``run``, ``sources``, ``bench``, ``build-engines``.

Parsing builds one :class:`~runtime.config.RuntimeConfig` and hands it to
:func:`runtime.app.run`, which wires bridges, engine, OSC and the frame loop. Anything the user got
wrong (flag, TOML, bridge name, busy port) ends in one ``dreamwire: error:``
line and exit code 2; a run stopped by SIGINT/SIGTERM or ``--frames`` exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from runtime.config import (
    BATCHING,
    GUIDANCE,
    LOG_LEVELS,
    MODES,
    OUTPUT_SIZES,
    ConfigError,
    RuntimeConfig,
    load_toml,
    set_value,
)
from runtime.control import SCHEMA, ControlError, ParamSpec, validate

log = logging.getLogger("dreamwire")

USAGE = """usage: dreamwire <command> [options]

commands:
  run             run the live runtime (default: tiny model, moving pattern in, PNG folder out)
  sources         list the video sources the installed bridges can see (NDI, Spout)
  bench           benchmarks (see dreamwire bench --help)
  build-engines   build and cache compiled engines ahead of a show

`dreamwire <command> --help` shows a command's options."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"dreamwire: error: {message} (see `dreamwire {self.prog.split()[-1]} --help`)\n")
        raise SystemExit(2)


# --- schema -> flags ------------------------------------------------------------------------------------


def _flag(spec: ParamSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def _cli_value(spec: ParamSpec, raw: Any) -> Any:
    """Strings from the command line -> the types :func:`validate` expects, then validated."""
    try:
        if spec.kind in ("float", "int"):
            value: Any = float(raw)
        elif spec.kind == "bool":
            text = str(raw).strip().lower()
            table = {"1": True, "true": True, "on": True, "yes": True,
                     "0": False, "false": False, "off": False, "no": False}
            if text not in table:
                raise ControlError(f"{spec.name}: expected 0/1 or true/false, got {raw!r}")
            value = table[text]
        elif spec.kind == "prompt_pairs":
            value = [x if i % 2 == 0 else float(x) for i, x in enumerate(raw)]
        elif spec.kind in ("seed_pairs", "index_list"):
            value = [float(x) for item in raw for x in str(item).replace(",", " ").split()]
        else:
            value = raw
    except ValueError:
        raise ControlError(f"{spec.name}: cannot read {raw!r} as {spec.type_label}") from None
    return validate(spec.name, value)


def _add_control_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live parameters (initial values; same names as OSC and [control] in TOML)")
    for spec in SCHEMA:
        kw: dict[str, Any] = {"dest": f"ctl_{spec.name}", "default": None}
        rng = f" [{spec.range_label}]" if spec.range_label != "-" else ""
        kw["help"] = f"{spec.doc} ({spec.type_label}{rng}, default {spec.default!r})"
        if spec.kind == "prompt_pairs":
            kw.update(nargs="*", metavar="TEXT WEIGHT")
        elif spec.kind == "seed_pairs":
            kw.update(nargs="*", metavar="SEED WEIGHT")
        elif spec.kind == "index_list":
            kw.update(nargs="*", metavar="INDEX")
        else:
            kw["metavar"] = spec.kind.upper()
        g.add_argument(_flag(spec), **kw)


def build_run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dreamwire run", description="Run the live runtime: frames in from a bridge, through the "
                "engine, back out; steer it over OSC. With no options: tiny model, moving test pattern in, "
                "PNGs in ./dreamwire-out, until Ctrl-C.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML config (flags override it)")
    p.add_argument("--source", help="input bridge: pattern[:WxH@FPS], images:DIR[@FPS], video:PATH, ndi:NAME, "
                   "spout:NAME (default pattern)")
    p.add_argument("--sink", help="output bridge: images:DIR, null, ndi:NAME, spout:NAME (default: the source's "
                   "bridge when it can send, else images:./dreamwire-out)")
    p.add_argument("--model", help="tiny (built-in, offline), a hub id or a local diffusers folder")
    p.add_argument("--backend", help="engine backend (default auto)")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--taesd", help="tiny autoencoder to use (hub id or folder)")
    p.add_argument("--lcm-lora", help="LCM-LoRA fused into plain SD 1.5 models (hub id or file/folder; 'none' "
                   "to skip; default latent-consistency/lcm-lora-sdv1-5)")
    p.add_argument("--lora", dest="loras", action="append", metavar="PATH[:SCALE]",
                   help="a style LoRA fused at load (any model kind, turbo included); repeat for several")
    p.add_argument("--frame-buffer", type=int, metavar="F", help="frames per engine call (default 1); the "
                   "UNet batch is steps x F")
    p.add_argument("--width", type=int, help="engine width (default 256 for tiny on CPU, else 512)")
    p.add_argument("--height", type=int, help="engine height (default as --width)")
    p.add_argument("--mode", choices=MODES, help="img2img (default: transform the source) or txt2img (generate "
                   "from the prompt; the source only paces frames and sets the output size)")
    p.add_argument("--guidance", choices=GUIDANCE, help="guidance method (default: self = RCFG self-negative for "
                   "img2img, none for txt2img)")
    p.add_argument("--batching", choices=BATCHING, help="stream batch (default) or sequential steps")
    p.add_argument("--frames", type=int, metavar="N", help="stop cleanly after N output frames")
    p.add_argument("--output-size", choices=OUTPUT_SIZES,
                   help="input: resize outputs back to each input's size (default); engine: leave them")
    p.add_argument("--osc-host", help="OSC bind address (default 127.0.0.1; 0.0.0.0 opts in to the network)")
    p.add_argument("--osc-port", type=int, help="OSC UDP (and TCP) port (default 7766)")
    p.add_argument("--osc-allow", metavar="IP[,IP...]", help="only accept OSC from these sender addresses")
    p.add_argument("--osc-prefix", help="OSC address prefix (default /dreamwire)")
    p.add_argument("--no-osc-tcp", dest="osc_tcp", action="store_false", default=None,
                   help="don't listen for OSC over TCP")
    p.add_argument("--telemetry", metavar="HOST:PORT", help="where stats and errors go (default 127.0.0.1:7767; "
                   "'off' to disable)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--report", action="store_true", default=None,
                   help="print the pipeline overhead (wall vs engine time per frame) on exit")
    _add_control_flags(p)
    return p


def config_from_args(ns: argparse.Namespace) -> RuntimeConfig:
    """Defaults, then ``--config``, then flags; raises :class:`ConfigError`."""
    cfg = load_toml(ns.config) if ns.config else RuntimeConfig()
    for key in ("model", "backend", "device", "taesd", "lcm_lora", "loras", "frame_buffer", "source", "sink", "width",
                "height", "mode", "guidance", "batching", "frames", "output_size", "log_level", "report"):
        if getattr(ns, key) is not None:
            set_value(cfg, key, getattr(ns, key))
    for key, attr in (("host", "osc_host"), ("port", "osc_port"), ("allow", "osc_allow"),
                      ("prefix", "osc_prefix"), ("tcp", "osc_tcp"), ("telemetry", "telemetry")):
        if getattr(ns, attr) is not None:
            set_value(cfg, f"osc.{key}", getattr(ns, attr), "--" + attr.replace("_", "-"))
    for spec in SCHEMA:
        raw = getattr(ns, f"ctl_{spec.name}")
        if raw is not None:
            try:
                cfg.control[spec.name] = _cli_value(spec, raw)
            except ControlError as exc:
                raise ConfigError(f"{_flag(spec)}: {exc}") from None
    return cfg


# --- subcommands ------------------------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def run_main(argv: Sequence[str]) -> int:
    ns = build_run_parser().parse_args(list(argv))
    try:
        cfg = config_from_args(ns)
    except ConfigError as exc:
        print(f"dreamwire: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg.log_level)
    from runtime.app import run

    return run(cfg)


def sources_main(argv: Sequence[str]) -> int:
    """List what the installed bridges can see; a missing extra is one line, not a traceback."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: dreamwire sources\n\nLists NDI and Spout senders visible from this machine.")
        return 0
    print("built-in: pattern, images:DIR, video:PATH (sources); images:DIR, null (sinks)")
    from bridges.base import BridgeError

    for name in ("ndi", "spout"):
        try:
            module = importlib.import_module(f"bridges.{name}")
            list_senders = getattr(module, "list_senders", None)
            if list_senders is None:
                print(f"{name}: sender discovery is not available in this version")
                continue
            senders = list(list_senders())
        except BridgeError as exc:  # the bridge's own message says what to install or use instead
            print(f"{name}: unavailable: {exc}")
            continue
        except ImportError as exc:
            print(f"{name}: unavailable ({exc}); install the extra: pip install 'dreamwire[{name}]'")
            continue
        if not senders:
            print(f"{name}: no senders found")
        for s in senders:
            print(f"{name}:{s}")
    return 0


def _delegate(module_name: str, command: str) -> Callable[[Sequence[str]], int]:
    def call(argv: Sequence[str]) -> int:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            print(f"dreamwire: error: `{command}` is not available in this build ({module_name} is missing)",
                  file=sys.stderr)
            return 2
        return int(module.main(list(argv)) or 0)
    return call


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_main,
    "sources": sources_main,
    "bench": _delegate("runtime.bench", "bench"),
    "build-engines": _delegate("runtime.build", "build-engines"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] == "--version":
        from runtime import __version__

        print(f"dreamwire {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"dreamwire: error: unknown command {args[0]!r}; expected one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        return command(args[1:])
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run installed its handlers
        print("dreamwire: interrupted", file=sys.stderr)
        return 130


