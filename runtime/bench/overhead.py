"""The live loop's own cost: wall time per output frame against engine time per step, in one run."""

from __future__ import annotations

import time
from typing import Any

from dreamwire.backends.assemble import build_engine
from dreamwire.bench.timing import PERCENTILES, overhead, percentile
from dreamwire.bridges.null import NullSink
from dreamwire.bridges.pattern import PatternSource
from dreamwire.engine.api import EngineConfig
from dreamwire.live.loop import FrameLoop
from dreamwire.live.options import LoopOptions
from dreamwire.live.outputs import Output
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import Stats


def measure_overhead(model: str = "tiny", *, frames: int = 200, warmup: int = 10, width: int = 256,
                     height: int = 256, device: str | None = None, backend: str = "auto",
                     engine: Any = None) -> dict[str, Any]:
    """Pipeline overhead of the live loop: (wall time per output frame - engine time per step) / engine time.

    Runs the engine between an on-demand ``pattern`` source and a ``null``
    sink, so the only costs beyond the engine step are the loop's own:
    pixel conversion, slot hand-offs, thread switches and the host copy.
    Not a test: a figure for ``docs/benchmarks.md`` (``dreamwire run --report``
    prints the same numbers for any run).
    """
    if engine is None:
        engine = build_engine(model, backend=backend, device=device, config=EngineConfig(width=width, height=height))
    source = PatternSource(f"{width}x{height}@0")
    sink = NullSink()
    source.open()
    sink.open()
    marks: dict[str, float] = {}
    stats = Stats()
    latencies: list[float] = []

    def on_sent(out: Output) -> None:
        if stats.frames_out == warmup:
            marks.update(t0=time.perf_counter(), e0=stats.engine_s_total, s0=stats.steps - stats.skipped)
        elif stats.frames_out > warmup:
            latencies.append(1000.0 * (time.perf_counter() - out.frame.capture_time))

    loop = FrameLoop(engine, source, sink, ParamState(), LoopOptions(max_frames=warmup + frames),
                     stats=stats, on_sent=on_sent)
    loop.start()
    loop.wait()
    t1 = time.perf_counter()
    loop.stop()
    steps = (stats.steps - stats.skipped) - marks["s0"]
    wall = (t1 - marks["t0"]) / frames
    eng = (stats.engine_s_total - marks["e0"]) / max(1, steps)
    return {
        "frames": float(frames),
        "wall_ms_per_frame": 1000.0 * wall,
        "engine_ms_per_step": 1000.0 * eng,
        "overhead": overhead(wall, eng),
        "fps": 1.0 / wall,
        "dropped": float(stats.dropped_in + stats.dropped_out),
        "latency_ms": latencies,
        **{f"latency_{name}_ms": percentile(latencies, q) for name, q in PERCENTILES.items()},
    }

