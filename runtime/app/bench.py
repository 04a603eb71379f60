"""``dreamwire bench``: engine speed as ratios measured within one run.

Absolute numbers on a shared machine drift by +-20 %, so every comparison here
alternates its two sides round by round and reports medians and their ratio.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dreamwire.backends.select import BACKENDS
from dreamwire.control.params import Params
from dreamwire.control.settings import boolean, choice, integer, setting, text
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.stream import StreamEngine

T_INDEX = {1: (35,), 2: (32, 45), 3: (25, 35, 45), 4: (18, 26, 35, 45)}


def _names(v: object) -> str:
    names = [x.strip() for x in text(v).split(",") if x.strip()]
    for n in names:
        choice(BACKENDS)(n.split(":")[0])
    return ",".join(names)


@dataclass
class BenchOptions:
    """``dreamwire bench`` options."""

    model: str = setting("tiny", "model to time (tiny, a hub id or a folder)", text)
    size: int = setting(256, "square resolution in pixels", integer(64, 4096), parse=int)
    backend: str = setting("torch", "engine backend for the engine comparisons", choice(BACKENDS), choices=BACKENDS)
    device: str | None = setting(None, "torch device", text, default_doc="cuda when available, else cpu")
    rounds: int = setting(5, "alternating rounds per comparison", integer(1, 1000), parse=int)
    per_round: int = setting(4, "engine steps per round", integer(1, 1000), parse=int)
    compare: str | None = setting(None, "also compare whole-engine backends, e.g. torch,onnxruntime (first = "
                                  "baseline)", _names, metavar="B1,B2")
    compare_frames: int = setting(40, "frames per backend for --compare", integer(1, 100000), parse=int)
    overhead: bool = setting(False, "also measure the live loop's overhead over the engine (pattern in, null out)",
                             boolean)
    gpu: bool = setting(False, "run the offline GPU benchmark instead: sd-turbo UNet + TAESD architectures with "
                        "random weights, per backend", boolean)
    gpu_backends: str = setting("torch,compile,tensorrt", "backends for --gpu", _names, metavar="B1,B2")
    gpu_steps: str = setting("1,4", "step counts (UNet batch per frame) for --gpu", text, metavar="N,N")
    warmup: int = setting(10, "untimed calls before timing, for --gpu", integer(0, 10000), parse=int)
    iters: int = setting(50, "timed calls per figure, for --gpu", integer(1, 100000), parse=int)
    fp32: bool = setting(False, "float32 instead of float16 for --gpu (e.g. a CPU dry run)", boolean)
    json: bool = setting(False, "print JSON instead of tables", boolean)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_steps(engine: StreamEngine, images: torch.Tensor | None, count: int) -> float:
    """Median seconds per engine step over ``count`` steps."""
    times = []
    for _ in range(count):
        _sync(engine.device)
        t0 = time.perf_counter()
        engine.step(images)
        _sync(engine.device)
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
        ta.append(_time_steps(a, images, per_round))
        tb.append(_time_steps(b, images, per_round))
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def run(model: str = "tiny", size: int = 256, backend: str = "torch", device: str | None = None,
        rounds: int = 5, per_round: int = 4, steps: tuple[int, ...] = (1, 2, 4)) -> dict:
    from dreamwire.app.assemble import build_engine, default_device

    dev = torch.device(device) if device else default_device()
    results: dict = {"model": model, "size": size, "backend": backend, "device": str(dev),
                     "machine": _machine(dev), "date": time.strftime("%Y-%m-%d")}
    base = build_engine(model, backend=backend, config=EngineConfig(width=size, height=size, guidance="none"),
                        device=dev)
    images = (torch.rand(1, 3, size, size, device=dev) * 2 - 1).to(base.dtype)

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
    results["stream_vs_sequential"] = rows

    p = Params({"t_index_list": T_INDEX[2], "guidance_scale": 1.5})
    full, rcfg = ab(lambda: engine(params=p, guidance="full"), lambda: engine(params=p, guidance="self"),
                    images, rounds, per_round)
    results["rcfg_self_vs_full"] = {"full_ms": full, "self_ms": rcfg, "speedup": full / rcfg}

    filt = engine(params=Params({"t_index_list": T_INDEX[2], "similarity_filter": True}), guidance="none")
    calls = 200
    t0 = time.perf_counter()
    skipped = sum(filt.step(images).skipped for _ in range(calls))
    results["similarity_static"] = {"calls": calls, "skipped": skipped, "skip_fraction": skipped / calls,
                                    "ms_per_call": (time.perf_counter() - t0) * 1e3 / calls,
                                    "max_skip": filt.params.similarity_max_skip}
    return results


def _machine(dev: torch.device) -> str:
    import os

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
    s = r["similarity_static"]
    lines += [f"Similarity filter on a static input: {s['skipped']}/{s['calls']} engine calls skipped "
              f"({s['skip_fraction']:.1%}, cap {s['max_skip']}), {s['ms_per_call']:.1f} ms per call on average"]
    return "\n".join(lines)


def main(o: BenchOptions) -> int:
    if o.gpu:
        from dreamwire.app.bench_gpu import run_gpu

        return run_gpu(o)
    r = run(o.model, o.size, o.backend, o.device, o.rounds, o.per_round)
    text_out = [format_results(r)]
    if o.compare:
        from dreamwire.app.bench_backends import compare_backends, format_table

        r["backends"] = compare_backends(o.model, o.size, o.compare_frames, backends=tuple(o.compare.split(",")),
                                         device=o.device or "cpu")
        text_out += ["", format_table(r["backends"])]
    if o.overhead:
        from dreamwire.app.overhead import measure_overhead

        ov = r["overhead"] = measure_overhead(o.model, width=o.size, height=o.size, device=o.device,
                                              backend=o.backend)
        text_out += ["", f"Loop overhead: wall {ov['wall_ms_per_frame']:.2f} ms/frame vs engine "
                         f"{ov['engine_ms_per_step']:.2f} ms/step: {100 * ov['overhead']:+.1f}%"]
    print(json.dumps(r, indent=2) if o.json else "\n".join(text_out))
    return 0
