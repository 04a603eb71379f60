"""How the bench lab times things: one clock, one device sync, medians of alternating rounds.

Absolute numbers on a shared machine drift by +-20 %, so every comparison alternates its two
sides round by round and reports medians and their ratio; everything that times lives here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from dreamwire.engine.stream import StreamEngine

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a perf_counter reading covers it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(engine: StreamEngine, images: torch.Tensor | None, count: int) -> float:
    """Median seconds per engine step over ``count`` steps."""
    times = []
    for _ in range(count):
        sync(engine.device)
        t0 = time.perf_counter()
        engine.step(images)
        sync(engine.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ab(make_a: Callable[[], StreamEngine], make_b: Callable[[], StreamEngine], images: torch.Tensor,
       rounds: int, per_round: int) -> tuple[float, float]:
    """Median ms per step of two engines, alternating rounds so drift hits both alike."""
    a, b = make_a(), make_b()
    for e in (a, b):  # warm-up: priming, allocator, kernels
        for _ in range(3):
            e.step(images)
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(time_steps(a, images, per_round))
        tb.append(time_steps(b, images, per_round))
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def overhead(wall_s: float, engine_s: float) -> float:
    """The live loop's cost beyond the engine, as a fraction of engine time: (wall − engine) / engine.

    ``wall_s`` is wall time per output frame and ``engine_s`` engine time per (non-skipped) step;
    ``dreamwire bench --overhead`` and ``dreamwire run --report`` both report this one figure.
    """
    return (wall_s - engine_s) / engine_s if engine_s > 0 else 0.0
