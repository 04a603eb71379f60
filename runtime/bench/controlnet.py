"""What ControlNets cost per engine step: 0, 1 and 2 of them on one model, measured in one run.

The cost is reported as a ratio to the plain engine, measured in alternating rounds, because absolute
times on a shared machine drift; a ratio measured side by side does not. Each engine counts its
ControlNet calls, so the figures prove they time what they claim (one call per ControlNet per step).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from dreamwire.backends.assemble import build_engine, default_device
from dreamwire.bench.timing import time_steps
from dreamwire.engine.api import EngineConfig
from dreamwire.engine.stream import StreamEngine
from dreamwire.models.sources import ControlNetSource

COUNTS = (0, 1, 2)


def _counting(engine: StreamEngine) -> list[int]:
    """Wrap the engine's backend.controlnet so every call is counted (the list holds the running total)."""
    calls = [0]
    inner = engine.backend.controlnet

    def counted(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        calls[0] += 1
        return inner(*args, **kwargs)

    engine.backend.controlnet = counted  # type: ignore[method-assign]
    return calls


def controlnet_cost(model: str = "tiny", controlnet: str = "tiny", size: int = 256, backend: str = "torch",
                    device: str | None = None, rounds: int = 5, per_round: int = 4) -> dict:
    """Median ms per engine step (default steps) with 0, 1 and 2 copies of ``controlnet``, and their ratios to 0."""
    dev = torch.device(device) if device else default_device()
    source = ControlNetSource.parse(controlnet)
    engines = {k: build_engine(model, backend=backend, device=dev, controlnets=(source,) * k,
                               config=EngineConfig(width=size, height=size, guidance="none")) for k in COUNTS}
    calls = {k: _counting(e) for k, e in engines.items() if k}
    images = torch.rand(1, 3, size, size, device=dev, generator=torch.Generator(dev).manual_seed(0)) * 2 - 1
    for e in engines.values():  # warm-up: priming, allocator, kernels
        for _ in range(3):
            e.step(images.to(e.dtype))
    start = {k: c[0] for k, c in calls.items()}
    times: dict[int, list[float]] = {k: [] for k in COUNTS}
    for _ in range(rounds):
        for k, e in engines.items():
            times[k].append(time_steps(e, images.to(e.dtype), per_round))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    steps = rounds * per_round
    return {"model": model, "controlnet": controlnet, "size": size, "backend": backend, "device": str(dev),
            "rows": [{"controlnets": k, "ms_per_step": ms[k], "ratio": ms[k] / ms[0],
                      "controlnet_calls_per_step": (calls[k][0] - start[k]) / steps if k else 0.0}
                     for k in COUNTS]}


def format_cost(r: dict) -> str:
    lines = [f"ControlNet cost: model={r['model']} controlnet={r['controlnet']} {r['size']}x{r['size']} "
             f"backend={r['backend']} device={r['device']}", "",
             "| ControlNets | ms/step | vs none | ControlNet calls/step |", "|---|---|---|---|"]
    lines += [f"| {x['controlnets']} | {x['ms_per_step']:.2f} | {x['ratio']:.2f}x | "
              f"{x['controlnet_calls_per_step']:.2f} |" for x in r["rows"]]
    return "\n".join(lines)
