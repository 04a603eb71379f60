"""``dreamwire run``'s wiring: bridges, engine, OSC and the frame loop from one RuntimeConfig.

Nothing here parses or computes; it builds the objects in an order that lets
bad names fail fast (bridges open before the slow model load) and an
:class:`~contextlib.ExitStack` tears down whatever was built, in reverse, on
any exit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamwire.app.config import RuntimeConfig, check_combination, resolve
from dreamwire.backends.assemble import assemble, default_device, fallback_for
from dreamwire.bench.timing import overhead
from dreamwire.bridges.base import BridgeError, Sink, Source, make_sink, make_source, parse_uri
from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.control.schema import MAX_STEPS
from dreamwire.engine.api import EngineConfig
from dreamwire.engine.background import Background
from dreamwire.engine.warmup import warm_up
from dreamwire.live.controlnet_feed import INPUT, ControlNetFeed, controlnet_routes
from dreamwire.live.failsafe import Failsafe
from dreamwire.live.loop import FrameLoop
from dreamwire.live.options import LoopOptions
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import Stats, Ticker
from dreamwire.models.controlnet import check_controlnet_source
from dreamwire.models.demo import DEMO, DEMO_SUMMARY
from dreamwire.models.load import check_source
from dreamwire.models.parts import ModelLoadError
from dreamwire.osc.reports import Reports
from dreamwire.osc.rig import Rig
from dreamwire.osc.scenes import SceneFileError, SceneStore
from dreamwire.osc.server import OscServer
from dreamwire.osc.tempo import LinkSession, LinkUnavailable, TempoClock

log = logging.getLogger(__name__)


class _Failed(Exception):
    """A user-facing problem: one line on stderr and exit code 2."""


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


def _open_source(uri: str, cfg: RuntimeConfig, stack: contextlib.ExitStack) -> Source:
    scheme, _ = parse_uri(uri)
    source = make_source(uri, **({"width": cfg.width, "height": cfg.height} if scheme == "pattern" else {}))
    source.open()
    stack.callback(source.close)
    return source


def _open_control_sources(cfg: RuntimeConfig, stack: contextlib.ExitStack) -> dict[str, Source]:
    """The ``--control-source`` bridges, opened (each distinct URI once) before the model loads."""
    routes = controlnet_routes(cfg.control_source, len(cfg.controlnet))
    return {uri: _open_source(uri, cfg, stack) for uri in dict.fromkeys(routes) if uri != INPUT}


def _open_bridges(cfg: RuntimeConfig, stack: contextlib.ExitStack) -> tuple[Source, Sink]:
    """Make and open source and sink before the (slow) engine build, so bad names fail in a second.

    Each is registered for closing as soon as it is open; once the loop owns them it closes them itself
    (the loop's ``stop`` is idempotent and a second close of a bridge is harmless).
    """
    source = _open_source(cfg.source, cfg, stack)
    sink = make_sink(cfg.sink)  # type: ignore[arg-type]
    sink.open()
    stack.callback(sink.close)
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
            f"pipeline overhead {100 * overhead(wall, eng):+.1f}% (source-paced runs overstate it; "
            f"use pattern:WxH@0 and --sink null to measure the loop alone)")


def run(cfg: RuntimeConfig) -> int:
    """Run until SIGINT/SIGTERM or ``cfg.frames`` outputs; 0 on a clean stop, 2 on bad input."""
    stop = threading.Event()
    install_stop_signals(stop)
    quiet_libraries(cfg.log_level)
    try:
        with contextlib.ExitStack() as stack:
            stats = _run(cfg, stop, stack)
    except _Failed as exc:
        print(f"dreamwire: error: {exc}", file=sys.stderr)
        return 2
    if stats is None:  # stopped while the engine was still loading
        return 0
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"dreamwire: stopped after {stats.frames_out} frames ({stats.status_line()})", file=sys.stderr)
    print(f"dreamwire: {output_hint(cfg.sink)}", file=sys.stderr)  # type: ignore[arg-type]
    if cfg.report:
        print(_report(stats))
    return 0


def _device(cfg: RuntimeConfig) -> torch.device:
    try:
        device = torch.device(cfg.device) if cfg.device else default_device()
    except RuntimeError as exc:
        raise _Failed(f"--device {cfg.device}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _Failed(f"--device {cfg.device}: CUDA is not available on this machine (try --device cpu)")
    return device


def _run(cfg: RuntimeConfig, stop: threading.Event, stack: contextlib.ExitStack) -> Stats | None:
    device = _device(cfg)
    resolve(cfg, device.type)
    try:
        params = Params(cfg.control)
        engine_config = EngineConfig(width=cfg.width, height=cfg.height, guidance=cfg.guidance,  # type: ignore[arg-type]
                                     batching=cfg.batching, frames=cfg.frame_buffer, mode=cfg.mode)
        check_source(cfg.model)
        check_combination(cfg)
        scenes = SceneStore.load(cfg.scenes)
        for net in cfg.controlnet:
            check_controlnet_source(net.source)
        source, sink = _open_bridges(cfg, stack)
        control_sources = _open_control_sources(cfg, stack)
    except (ControlError, ValueError, ModelLoadError, BridgeError, SceneFileError) as exc:
        raise _Failed(str(exc)) from None
    print(f"dreamwire: {cfg.source} -> {cfg.model} ({cfg.width}x{cfg.height}, {device}) -> {cfg.sink}",
          file=sys.stderr)
    print(f"dreamwire: {output_hint(cfg.sink)}", file=sys.stderr)  # type: ignore[arg-type]
    if cfg.model in ("tiny", "tiny-sdxl"):
        print(f"dreamwire: model {cfg.model!r} has random weights (it tests the plumbing): expect dark, noise-like "
              f"frames; use e.g. --model stabilityai/{'sdxl' if cfg.model == 'tiny-sdxl' else 'sd'}-turbo for real "
              "images", file=sys.stderr)
    if cfg.model == DEMO:
        print(f"dreamwire: {DEMO_SUMMARY}", file=sys.stderr)
    try:
        background = Background()  # live prompt changes are encoded off the engine thread
        stack.callback(background.close)
        engine, parts = assemble(cfg.model, backend=cfg.backend, config=engine_config, params=params, device=device,
                                 taesd=cfg.taesd, lcm_lora=None if cfg.lcm_lora.lower() == "none" else cfg.lcm_lora,
                                 loras=cfg.loras, controlnets=cfg.controlnet, control_images=cfg.control_image,
                                 background=background)
        state = ParamState(params, check=engine.check)
    except (ModelLoadError, ValueError) as exc:
        raise _Failed(str(exc)) from None
    if stop.is_set():
        return None
    reports = Reports(cfg.osc.telemetry, cfg.osc.prefix)  # errors from OSC, the rig and the failsafe
    stack.callback(reports.close)
    failsafe = Failsafe(cfg.failsafe, report=lambda reason: reports.error("engine", reason))
    stats = Stats(health=failsafe.status)
    rig = Rig(state, scenes=scenes, tempo=_tempo(cfg, stack), report=reports.error)
    osc = _start_osc(cfg, state, stats, stack, rig, reports)
    stack.callback(Ticker(cfg.osc.telemetry_period, osc.send_telemetry, "dreamwire-telemetry").start().stop)
    if cfg.warm_up == "all" or (cfg.warm_up == "auto" and device.type == "cuda"):
        _warm(engine)
    stats.ready = True
    print("dreamwire: ready", file=sys.stderr)
    feed = ControlNetFeed(controlnet_routes(cfg.control_source, len(cfg.controlnet)), control_sources,
                          engine.controlnets).start()
    stack.callback(feed.close)
    loop = FrameLoop(engine, source, sink, state, LoopOptions(max_frames=cfg.frames, output_size=cfg.output_size),
                     stats, failsafe=failsafe, fallback=fallback_for(engine, parts), before_step=rig.tick,
                     controlnet_feed=feed)
    stack.callback(loop.stop)
    stack.callback(Ticker(1.0, _status_printer(stats), "dreamwire-status").start().stop)
    loop.start()
    while not stop.is_set() and not loop.finished.is_set():
        stop.wait(0.2)
    return stats


def _tempo(cfg: RuntimeConfig, stack: contextlib.ExitStack) -> TempoClock:
    """The beat grid: OSC tempo and taps, or an Ableton Link session with --link."""
    import time

    if not cfg.link:
        return TempoClock(time.perf_counter)
    try:
        link = LinkSession()
    except LinkUnavailable as exc:
        raise _Failed(str(exc)) from None
    stack.callback(link.close)
    print("dreamwire: following Ableton Link", file=sys.stderr)
    return TempoClock(time.perf_counter, link=link)


def _start_osc(cfg: RuntimeConfig, state: ParamState, stats: Stats, stack: contextlib.ExitStack,
               rig: Rig, reports: Reports) -> OscServer:
    try:
        osc = OscServer(state, stats.snapshot, cfg.osc, rig, reports).start()
    except OSError as exc:
        raise _Failed(f"cannot listen for OSC on {cfg.osc.host}:{cfg.osc.port}: {exc.strerror or exc} "
                      "(use --osc-port)") from None
    stack.callback(osc.close)
    if cfg.osc.host not in ("127.0.0.1", "localhost", "::1") and not cfg.osc.allow:
        log.warning("OSC listens on %s with no --osc-allow list: anyone who can reach this machine "
                    "can steer it", cfg.osc.host)
    where = f"{cfg.osc.host}:{osc.port}" + (" (UDP+TCP)" if osc.tcp_port else " (UDP)")
    tele = "off" if cfg.osc.telemetry is None else "{}:{}".format(*cfg.osc.telemetry)
    print(f"dreamwire: OSC on {where} under {osc.prefix}/, telemetry to {tele}", file=sys.stderr)
    return osc


def _warm(engine: Any) -> None:
    """Compile/capture every reachable shape now, with a progress bar, so no live change stalls the show."""
    from tqdm import tqdm

    with tqdm(total=MAX_STEPS, desc="dreamwire: warm-up (steps 1..8)", unit="steps", file=sys.stderr) as bar:
        warm_up(engine, progress=lambda n, _total: bar.update(n - bar.n))


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
