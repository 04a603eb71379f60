"""``dreamwire run``'s wiring: bridges, engine, OSC and the frame loop from one RuntimeConfig.

Nothing here parses or computes; it builds the objects in an order that lets
bad names fail fast (bridges open before the slow model load) and tears them
down in reverse on any exit.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.config import RuntimeConfig
from runtime.control import ControlError

log = logging.getLogger("dreamwire")


def quiet_libraries(level: str) -> None:
    """Silence diffusers/transformers progress bars and config chatter unless debugging.

    Their per-load "Loading weights" bars and harmless config warnings bury the
    few lines a performer needs (where the output goes, the OSC port).
    """
    if level.lower() == "debug":
        return
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def install_stop_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` (a second SIGINT falls back to Python's KeyboardInterrupt)."""
    def handler(signum: int, _frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        if stop.is_set() and signum == signal.SIGINT:
            signal.default_int_handler(signum, _frame)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def output_hint(sink_uri: str) -> str:
    scheme, _, rest = sink_uri.partition(":")
    if scheme == "images":
        return f"output frames: {Path(rest).expanduser().resolve()}"
    return f"output: {sink_uri}"


def _fail(message: str) -> int:
    print(f"dreamwire: error: {message}", file=sys.stderr)
    return 2


def _open_bridges(cfg: RuntimeConfig) -> tuple[Any, Any]:
    """Make and open source and sink before the (slow) engine build, so bad names fail in a second."""
    from bridges.base import make_sink, make_source, parse_uri

    scheme, _ = parse_uri(cfg.source)
    options = {"width": cfg.width, "height": cfg.height} if scheme == "pattern" else {}
    source = make_source(cfg.source, **options)
    sink = make_sink(cfg.sink)  # type: ignore[arg-type]
    source.open()
    try:
        sink.open()
    except BaseException:
        source.close()
        raise
    return source, sink


def _report(stats: Any) -> str:
    """Pipeline overhead of this run: (wall per output frame - engine per step) / engine per step."""
    n = stats.frames_out
    steps = stats.steps - stats.skipped
    if n < 3 or steps < 1 or stats.first_out is None:
        return "report: too few frames to measure overhead"
    wall = (stats.last_out - stats.first_out) / (n - 1)
    eng = stats.engine_s_total / steps
    return (f"report: {n} frames, wall {1000 * wall:.2f} ms/frame, engine {1000 * eng:.2f} ms/step, "
            f"pipeline overhead {100 * (wall - eng) / eng:+.1f}% (source-paced runs overstate it; "
            f"use pattern:WxH@0 and --sink null to measure the loop alone)")


def run(cfg: RuntimeConfig) -> int:
    """Run until SIGINT/SIGTERM or ``cfg.frames`` outputs; 0 on a clean stop, 2 on bad input."""
    import torch

    from bridges.base import BridgeError
    from runtime.assemble import build_engine, default_device
    from runtime.config import resolve
    from runtime.control import ControlState, Params
    from runtime.loop import FrameLoop, LoopOptions
    from runtime.models import ModelLoadError, check_source
    from runtime.osc import OscControl
    from runtime.stream import EngineConfig
    from runtime.telemetry import Stats, Ticker

    stop = threading.Event()
    install_stop_signals(stop)
    quiet_libraries(cfg.log_level)
    try:
        device = torch.device(cfg.device) if cfg.device else default_device()
    except RuntimeError as exc:
        return _fail(f"--device {cfg.device}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        return _fail(f"--device {cfg.device}: CUDA is not available on this machine (try --device cpu)")
    resolve(cfg, device.type)
    try:
        params = Params(cfg.control)
        engine_config = EngineConfig(width=cfg.width, height=cfg.height, guidance=cfg.guidance,  # type: ignore[arg-type]
                                     batching=cfg.batching, frames=cfg.frame_buffer, mode=cfg.mode)
    except (ControlError, ValueError) as exc:
        return _fail(str(exc))
    try:
        check_source(cfg.model)
    except ModelLoadError as exc:
        return _fail(str(exc))
    try:
        source, sink = _open_bridges(cfg)
    except BridgeError as exc:
        return _fail(str(exc))
    print(f"dreamwire: {cfg.source} -> {cfg.model} ({cfg.width}x{cfg.height}, {device}) -> {cfg.sink}",
          file=sys.stderr)
    print(f"dreamwire: {output_hint(cfg.sink)}", file=sys.stderr)  # type: ignore[arg-type]
    if cfg.model == "tiny":
        print("dreamwire: model 'tiny' has random weights (it tests the plumbing): expect dark, noise-like "
              "frames; use e.g. --model stabilityai/sd-turbo for real images", file=sys.stderr)
    osc = None
    loop = None
    tickers: list[Ticker] = []
    try:
        try:
            engine = build_engine(cfg.model, backend=cfg.backend, config=engine_config, params=params,
                                  device=device, taesd=cfg.taesd,
                                  lcm_lora=None if cfg.lcm_lora.lower() == "none" else cfg.lcm_lora,
                                  loras=cfg.loras)
        except (ModelLoadError, ValueError) as exc:
            return _fail(str(exc))
        if stop.is_set():
            return 0
        state = ControlState(params)
        stats = Stats()
        try:
            osc = OscControl(state, stats.snapshot, cfg.osc).start()
        except OSError as exc:
            return _fail(f"cannot listen for OSC on {cfg.osc.host}:{cfg.osc.port}: {exc.strerror or exc} "
                         "(use --osc-port)")
        if cfg.osc.host not in ("127.0.0.1", "localhost", "::1") and not cfg.osc.allow:
            log.warning("OSC listens on %s with no --osc-allow list: anyone who can reach this machine "
                        "can steer it", cfg.osc.host)
        where = f"{cfg.osc.host}:{osc.port}" + (" (UDP+TCP)" if osc.tcp_port else " (UDP)")
        tele = "off" if cfg.osc.telemetry is None else "{}:{}".format(*cfg.osc.telemetry)
        print(f"dreamwire: OSC on {where} under {osc.prefix}/, telemetry to {tele}", file=sys.stderr)
        loop = FrameLoop(engine, source, sink, state,
                         LoopOptions(max_frames=cfg.frames, output_size=cfg.output_size), stats)
        tickers = [Ticker(cfg.osc.telemetry_period, osc.send_telemetry, "dreamwire-telemetry").start(),
                   Ticker(1.0, _status_printer(stats), "dreamwire-status").start()]
        loop.start()
        while not stop.is_set() and not loop.finished.is_set():
            stop.wait(0.2)
    finally:
        for t in tickers:
            t.stop()
        if loop is not None:
            loop.stop()
        else:
            source.close()
            sink.close()
        if osc is not None:
            osc.close()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"dreamwire: stopped after {stats.frames_out} frames ({stats.status_line()})", file=sys.stderr)
    print(f"dreamwire: {output_hint(cfg.sink)}", file=sys.stderr)  # type: ignore[arg-type]
    if cfg.report:
        print(_report(stats))
    return 0


def _status_printer(stats: Any) -> Callable[[], None]:
    """A live status line: rewritten in place on a terminal, a log line every 5 s otherwise."""
    tty = sys.stderr.isatty()
    ticks = [0]

    def tick() -> None:
        ticks[0] += 1
        if tty:
            sys.stderr.write("\r" + stats.status_line() + "  ")
            sys.stderr.flush()
        elif ticks[0] % 5 == 0:
            log.info("%s", stats.status_line())

    return tick
