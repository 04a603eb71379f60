"""``dreamwire bench``: engine speed as ratios measured within one run.

Absolute numbers on a shared machine drift by +-20 %, so every comparison here
alternates its two sides round by round and reports medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from runtime.assemble import build_engine, default_device
from runtime.control import Params
from runtime.stream import EngineConfig, StreamEngine

T_INDEX = {1: (35,), 2: (32, 45), 3: (25, 35, 45), 4: (18, 26, 35, 45)}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dreamwire bench", description=__doc__)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=4)
    ap.add_argument("--compare", metavar="B1,B2", help="also compare whole-engine backends, e.g. torch,onnxruntime")
    ap.add_argument("--overhead", action="store_true",
                    help="also measure the live loop's overhead over the engine (pattern in, null out)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    r = run(args.model, args.size, args.backend, args.device, args.rounds, args.per_round)
    text = [format_results(r)]
    if args.compare:
        from runtime.bench_backends import compare_backends, format_table

        r["backends"] = compare_backends(args.model, args.size, backends=tuple(args.compare.split(",")),
                                         device=args.device or "cpu")
        text += ["", format_table(r["backends"])]
    if args.overhead:
        from runtime.loop import measure_overhead

        o = r["overhead"] = measure_overhead(args.model, width=args.size, height=args.size, device=args.device,
                                             backend=args.backend)
        text += ["", f"Loop overhead: wall {o['wall_ms_per_frame']:.2f} ms/frame vs engine "
                     f"{o['engine_ms_per_step']:.2f} ms/step: {100 * o['overhead']:+.1f}%"]
    print(json.dumps(r, indent=2) if args.json else "\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
