"""``dreamwire bench``: which measurements an options set asks for, run and printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dreamwire.bench.backends import compare_backends, format_table
from dreamwire.bench.controlnet import controlnet_cost, format_cost
from dreamwire.bench.engine import format_results, run
from dreamwire.bench.options import BenchOptions
from dreamwire.bench.overhead import measure_overhead
from dreamwire.bench.report import measure, summary, write


def main(o: BenchOptions) -> int:
    if o.gpu and o.backends is not None and o.device in (None, "cuda") and not torch.cuda.is_available():
        print("dreamwire bench --gpu: no CUDA device; --device cpu --gpu-arch tiny runs the same checks on a CPU",
              file=sys.stderr)
        return 2
    if o.gpu or o.report:
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
        r["backends"] = compare_backends(o.model, o.size, o.frames, backends=tuple(o.compare.split(",")),
                                         device=o.device or "cpu")
        text_out += ["", format_table(r["backends"])]
    if o.overhead:
        ov = r["overhead"] = measure_overhead(o.model, width=o.size, height=o.size, device=o.device,
                                              backend=o.backend)
        text_out += ["", f"Loop overhead: wall {ov['wall_ms_per_frame']:.2f} ms/frame vs engine "
                         f"{ov['engine_ms_per_step']:.2f} ms/step: {100 * ov['overhead']:+.1f}%"]
    if o.controlnet:
        r["controlnet"] = controlnet_cost(o.model, o.controlnet, o.size, o.backend, o.device, o.rounds, o.per_round)
        text_out += ["", format_cost(r["controlnet"])]
    print(json.dumps(r, indent=2, default=str) if o.json else "\n".join(text_out))
    return 0
