"""``dreamwire bench``'s engine comparisons: stream vs sequential, RCFG vs CFG, the similarity filter.

Every figure is a ratio of two sides timed in alternating rounds within one run (see timing.py).
"""

from __future__ import annotations

import os
import platform
import time

import torch

from dreamwire.backends.assemble import build_engine, default_device
from dreamwire.bench.timing import ab, sync
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig
from dreamwire.engine.stream import StreamEngine

T_INDEX = {1: (35,), 2: (32, 45), 3: (25, 35, 45), 4: (18, 26, 35, 45)}


def run(model: str = "tiny", size: int = 256, backend: str = "torch", device: str | None = None,
        rounds: int = 5, per_round: int = 4, steps: tuple[int, ...] = (1, 2, 4)) -> dict:
    dev = torch.device(device) if device else default_device()
    base = build_engine(model, backend=backend, config=EngineConfig(width=size, height=size, guidance="none"),
                        device=dev)
    results: dict = {"model": model, "size": size, "backend": backend, "device": str(dev),
                     "machine": _machine(dev), "date": time.strftime("%Y-%m-%d")}
    results.update(compare_engines(base, size, rounds, per_round, steps))
    return results


def compare_engines(base: StreamEngine, size: int, rounds: int, per_round: int, steps: tuple[int, ...] = (1, 2, 4),
                    filter_calls: int = 200) -> dict:
    """Stream vs sequential per step count, RCFG self vs full CFG, and the similarity filter on a static
    and a moving input, all on ``base``'s backend (engines differ only in their EngineConfig)."""
    dev = base.device
    images = (torch.rand(1, 3, size, size, device=dev, generator=torch.Generator(dev).manual_seed(0)) * 2 - 1)
    images = images.to(base.dtype)

    def engine(**kw) -> StreamEngine:
        params = kw.pop("params")
        cfg = EngineConfig(width=size, height=size, **kw)
        return StreamEngine(base.backend, base.prompts, base.model, cfg, params)

    rows = []
    for n in steps:
        p = Params({"t_index_list": T_INDEX[n]})
        seq, stream = ab(lambda p=p: engine(params=p, guidance="none", batching="sequential"),
                         lambda p=p: engine(params=p, guidance="none", batching="stream"),
                         images, rounds, per_round)
        rows.append({"n": n, "sequential_ms": seq, "stream_ms": stream, "speedup": seq / stream})
    p = Params({"t_index_list": T_INDEX[2], "guidance_scale": 1.5})
    full, rcfg = ab(lambda: engine(params=p, guidance="full"), lambda: engine(params=p, guidance="self"),
                    images, rounds, per_round)
    filt = Params({"t_index_list": T_INDEX[2], "similarity_filter": True})
    moving = [images.roll(8 * k, dims=-1) for k in range(8)]  # a scrolling picture: every frame differs
    out = engine(params=p, guidance="self").step(images).images
    return {
        "nan_check": _finite_check_cost(out, rcfg),
        "stream_vs_sequential": rows,
        "rcfg_self_vs_full": {"full_ms": full, "self_ms": rcfg, "speedup": full / rcfg},
        "similarity_static": _filter_run(engine(params=filt, guidance="none"), [images], filter_calls),
        "similarity_moving": _filter_run(engine(params=filt, guidance="none"), moving, filter_calls),
    }


def _finite_check_cost(out: torch.Tensor, step_ms: float, count: int = 200) -> dict:
    """What the loop's NaN/inf guard costs per output: one fused reduction (read here, so synced)."""
    sync(out.device)
    t0 = time.perf_counter()
    for _ in range(count):
        finite = torch.isfinite(out).all()
    bool(finite)
    ms = (time.perf_counter() - t0) * 1e3 / count
    return {"ms": ms, "step_ms": step_ms, "fraction_of_step": ms / step_ms}


def _filter_run(filt: StreamEngine, inputs: list[torch.Tensor], calls: int) -> dict:
    sync(filt.device)
    t0 = time.perf_counter()
    skipped = sum(filt.step(inputs[k % len(inputs)]).skipped for k in range(calls))
    sync(filt.device)
    return {"calls": calls, "skipped": skipped, "skip_fraction": skipped / calls,
            "ms_per_call": (time.perf_counter() - t0) * 1e3 / calls, "max_skip": filt.params.similarity_max_skip}


def _machine(dev: torch.device) -> str:
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


def format_results(r: dict) -> str:
    lines = [f"dreamwire bench: model={r['model']} {r['size']}x{r['size']} backend={r['backend']} "
             f"device={r['device']} ({r['machine']}) {r['date']}",
             "", "| n | sequential ms/frame | stream ms/frame | stream fps | speed-up |", "|---|---|---|---|---|"]
    for row in r["stream_vs_sequential"]:
        lines.append(f"| {row['n']} | {row['sequential_ms']:.1f} | {row['stream_ms']:.1f} | "
                     f"{1e3 / row['stream_ms']:.1f} | {row['speedup']:.2f}x |")
    g = r["rcfg_self_vs_full"]
    lines += ["", f"RCFG self {g['self_ms']:.1f} ms vs full CFG {g['full_ms']:.1f} ms per frame (n=2): "
                  f"{g['speedup']:.2f}x"]
    c = r["nan_check"]
    lines += [f"NaN/inf guard: {c['ms']:.3f} ms per output, {100 * c['fraction_of_step']:.2f}% of a "
              f"{c['step_ms']:.1f} ms step (RCFG self, n=2)"]
    for kind in ("static", "moving"):
        s = r[f"similarity_{kind}"]
        lines += [f"Similarity filter on a {kind} input: {s['skipped']}/{s['calls']} engine calls skipped "
                  f"({s['skip_fraction']:.1%}, cap {s['max_skip']}), {s['ms_per_call']:.1f} ms per call on average"]
    return "\n".join(lines)
