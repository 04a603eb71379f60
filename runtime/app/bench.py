"""``dreamwire bench``: engine speed as ratios measured within one run.

Absolute numbers on a shared machine drift by +-20 %, so every comparison here
alternates its two sides round by round and reports medians and their ratio.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamwire.app.random_models import ARCHS
from dreamwire.backends.select import BACKENDS
from dreamwire.control.params import Params
from dreamwire.control.schema import MAX_STEPS
from dreamwire.control.settings import boolean, choice, integer, setting, text
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.stream import StreamEngine

T_INDEX = {1: (35,), 2: (32, 45), 3: (25, 35, 45), 4: (18, 26, 35, 45)}


def _names(v: object) -> str:
    names = [x.strip() for x in text(v).split(",") if x.strip()]
    for n in names:
        choice(BACKENDS)(n.split(":")[0])
    return ",".join(names)


def _counts(v: object) -> str:
    text(v)
    try:
        counts = [int(x) for x in str(v).split(",")]
    except ValueError:
        raise ValueError(f"expected comma-separated step counts, got {v!r}") from None
    for n in counts:
        integer(1, MAX_STEPS)(n)
    return ",".join(map(str, counts))


@dataclass
class BenchOptions:
    """``dreamwire bench`` options."""

    model: str = setting("tiny", "model to time (tiny, tiny-sdxl, a hub id or a folder)", text)
    size: int = setting(256, "square resolution in pixels", integer(64, 4096), parse=int)
    backend: str = setting("torch", "engine backend for the engine comparisons", choice(BACKENDS), choices=BACKENDS)
    device: str | None = setting(None, "torch device", text, default_doc="cuda when available, else cpu")
    rounds: int = setting(5, "alternating rounds per comparison", integer(1, 1000), parse=int)
    per_round: int = setting(4, "engine steps per round", integer(1, 1000), parse=int)
    compare: str | None = setting(None, "also compare whole-engine backends, e.g. torch,onnxruntime (first = "
                                  "baseline)", _names, metavar="B1,B2")
    controlnet: str | None = setting(None, "also time the engine with 1 and 2 of this ControlNet against none "
                                     "(hub id, folder or tiny)", text, metavar="ID")
    overhead: bool = setting(False, "also measure the live loop's overhead over the engine (pattern in, null out)",
                             boolean)
    report: str | None = setting(None, "measure every backend of --backends and write results.json, PNG plots "
                                 "and summary.txt into this folder", text, metavar="DIR")
    gpu: bool = setting(False, "the GPU validation run instead: sd-turbo UNet + TAESD architectures with random "
                        "weights, fp16; correctness checks, then every backend's figures", boolean)
    backends: str | None = setting(None, "backends measured by --report and --gpu", _names, metavar="B1,B2",
                                   default_doc="torch,onnxruntime; with --gpu torch,torch+graphs,compile,tensorrt")
    steps: str = setting("1,2,4", "step counts measured by --report/--gpu", _counts, metavar="N,N")
    frames: int = setting(40, "frames per measurement (--compare, --report, --gpu)", integer(1, 100000), parse=int)
    finite_frames: int = setting(300, "frames checked for NaN/inf by --gpu", integer(1, 100000), parse=int)
    gpu_arch: str = setting("sd-turbo", "architecture for --gpu (sdxl-turbo: SDXL's UNet + TAESDXL; tiny, tiny-sdxl: "
                            "the same run in seconds, e.g. on a CPU)",
                            choice(ARCHS), choices=ARCHS)
    fp32: bool = setting(False, "float32 instead of float16 on CUDA", boolean)
    json: bool = setting(False, "print JSON instead of tables", boolean)

    def __post_init__(self) -> None:
        if self.backends is None:
            self.backends = "torch,torch+graphs,compile,tensorrt" if self.gpu else "torch,onnxruntime"


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
    _sync(out.device)
    t0 = time.perf_counter()
    for _ in range(count):
        finite = torch.isfinite(out).all()
    bool(finite)
    ms = (time.perf_counter() - t0) * 1e3 / count
    return {"ms": ms, "step_ms": step_ms, "fraction_of_step": ms / step_ms}


def _filter_run(filt: StreamEngine, inputs: list[torch.Tensor], calls: int) -> dict:
    _sync(filt.device)
    t0 = time.perf_counter()
    skipped = sum(filt.step(inputs[k % len(inputs)]).skipped for k in range(calls))
    _sync(filt.device)
    return {"calls": calls, "skipped": skipped, "skip_fraction": skipped / calls,
            "ms_per_call": (time.perf_counter() - t0) * 1e3 / calls, "max_skip": filt.params.similarity_max_skip}


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
    c = r["nan_check"]
    lines += [f"NaN/inf guard: {c['ms']:.3f} ms per output, {100 * c['fraction_of_step']:.2f}% of a "
              f"{c['step_ms']:.1f} ms step (RCFG self, n=2)"]
    for kind in ("static", "moving"):
        s = r[f"similarity_{kind}"]
        lines += [f"Similarity filter on a {kind} input: {s['skipped']}/{s['calls']} engine calls skipped "
                  f"({s['skip_fraction']:.1%}, cap {s['max_skip']}), {s['ms_per_call']:.1f} ms per call on average"]
    return "\n".join(lines)


def main(o: BenchOptions) -> int:
    if o.gpu and o.backends is not None and o.device in (None, "cuda") and not torch.cuda.is_available():
        print("dreamwire bench --gpu: no CUDA device; --device cpu --gpu-arch tiny runs the same checks on a CPU",
              file=sys.stderr)
        return 2
    if o.gpu or o.report:
        from dreamwire.app.report import measure, summary, write

        results = measure(o)
        if o.report:
            paths = write(results, Path(o.report))
            print(summary(results) + "\n" + "\n".join(f"wrote {p}" for p in paths))
        else:
            print(json.dumps(results, indent=1, default=str) if o.json else summary(results))
        return 0 if results["ok"] else 1
    r = run(o.model, o.size, o.backend, o.device, o.rounds, o.per_round)
    text_out = [format_results(r)]
    if o.compare:
        from dreamwire.app.bench_backends import compare_backends, format_table

        r["backends"] = compare_backends(o.model, o.size, o.frames, backends=tuple(o.compare.split(",")),
                                         device=o.device or "cpu")
        text_out += ["", format_table(r["backends"])]
    if o.overhead:
        from dreamwire.app.overhead import measure_overhead

        ov = r["overhead"] = measure_overhead(o.model, width=o.size, height=o.size, device=o.device,
                                              backend=o.backend)
        text_out += ["", f"Loop overhead: wall {ov['wall_ms_per_frame']:.2f} ms/frame vs engine "
                         f"{ov['engine_ms_per_step']:.2f} ms/step: {100 * ov['overhead']:+.1f}%"]
    if o.controlnet:
        from dreamwire.app.bench_controlnet import controlnet_cost, format_cost

        r["controlnet"] = controlnet_cost(o.model, o.controlnet, o.size, o.backend, o.device, o.rounds, o.per_round)
        text_out += ["", format_cost(r["controlnet"])]
    print(json.dumps(r, indent=2, default=str) if o.json else "\n".join(text_out))
    return 0
