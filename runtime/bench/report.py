"""``dreamwire bench --report DIR``: measure each backend, then write results.json, PNG plots and a summary.

The CPU report and the GPU validation share one result shape (``backends``:
one dict of figures per backend, ``checks``: pass/fail with numbers), so one
writer serves both and the plots are always drawn from what the JSON holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from dreamwire.backends.assemble import default_device, prompt_encoder
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.select import make_backend
from dreamwire.bench import plots
from dreamwire.bench.timing import PERCENTILES, percentile
from dreamwire.bench.validate import measure_backend, run_validation
from dreamwire.engine.api import EngineConfig
from dreamwire.models.load import load_model

PLOTS = ("fps_by_backend.png", "stream_vs_sequential.png", "rcfg_vs_cfg.png", "similarity_savings.png",
         "latency_histogram.png")


def measure(o: Any) -> dict:
    """The GPU validation (``--gpu``), or the same per-backend figures for ``--model`` on this machine."""
    if o.gpu:
        return run_validation(o)
    device = torch.device(o.device) if o.device else default_device()
    dtype = torch.float16 if device.type == "cuda" and not o.fp32 else torch.float32
    parts = load_model(o.model, lcm_lora=None, device=device, dtype=dtype)
    prompts = prompt_encoder(parts, device, dtype, (o.size, o.size))
    out: dict = {"kind": "bench", "model": o.model, "device": str(device), "size": o.size,
                 "dtype": str(dtype).removeprefix("torch."), "checks": {},
                 "backends": {}, "date": time.strftime("%Y-%m-%d %H:%M")}
    for name in o.backends.split(","):
        try:
            backend = make_backend(name, parts, config=EngineConfig(width=o.size, height=o.size))
        except BackendUnavailable as exc:
            out["backends"][name] = {"error": str(exc).split(" (")[0]}
            continue
        out["backends"][name] = measure_backend(o, name, backend, parts, prompts)
    out["ok"] = True
    return out


def _measured(results: dict) -> dict[str, dict]:
    return {name: r for name, r in results["backends"].items() if "error" not in r}


def write(results: dict, folder: Path) -> list[Path]:
    """results.json, the plots and summary.txt into ``folder``; returns the written paths."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    written = [folder / "results.json"]
    ok = _measured(results)
    if ok:
        first = next(iter(ok.values()))
        lat = first["latency_ms"]
        fps = {b: {int(n): v for n, v in r["fps"].items()} for b, r in ok.items()}
        written += [
            plots.fps_by_backend(folder / PLOTS[0], fps),
            plots.stream_vs_sequential(folder / PLOTS[1], first["stream_vs_sequential"]),
            plots.rcfg_vs_cfg(folder / PLOTS[2], {b: r["rcfg_self_vs_full"] for b, r in ok.items()}),
            plots.similarity_savings(folder / PLOTS[3], {"static": first["similarity_static"],
                                                         "moving": first["similarity_moving"]}),
            plots.latency_histogram(folder / PLOTS[4], lat, {k: percentile(lat, q) for k, q in PERCENTILES.items()}),
        ]
    (folder / "summary.txt").write_text(summary(results) + "\n", encoding="utf-8")
    return [*written, folder / "summary.txt"]


def summary(results: dict) -> str:
    """One screen: what ran where, every check, and each backend's headline figures."""
    lines = [f"dreamwire {results['kind']}: {results.get('device')} size {results.get('size')} "
             f"{results.get('dtype', '')} {results.get('arch', results.get('model', ''))} {results.get('date', '')}"]
    for name, c in results["checks"].items():
        detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items() if k != "ok")
        lines.append(f"  [{'PASS' if c['ok'] else 'FAIL'}] {name}: {detail}")
    for name, r in results["backends"].items():
        if "error" in r:
            lines.append(f"  {name}: not run: {r['error']}")
            continue
        fps = ", ".join(f"{n} step {v:.1f} fps" for n, v in r["fps"].items())
        sv = r["stream_vs_sequential"][-1]
        lines.append(f"  {name}: {fps}; stream/seq {sv['speedup']:.2f}x at n={sv['n']}; "
                     f"RCFG/CFG {r['rcfg_self_vs_full']['speedup']:.2f}x; loop overhead "
                     f"{100 * r['loop']['overhead']:+.1f}%; latency p50 {r['loop']['latency_p50_ms']:.1f} ms"
                     + (f"; peak VRAM {r['peak_vram_gb']:.2f} GB" if "peak_vram_gb" in r else ""))
        ms = ", ".join(f"{k} {v:.2f}" for k, v in r["ms_per_call"].items())
        lines.append(f"    ms per call: {ms}; captures {r['captures']}")
    if "seconds" in results:
        verdict = "ALL CHECKS PASS" if results["ok"] else "SOME CHECKS FAIL"
        lines.append(f"  total {results['seconds']:.0f} s; {verdict}")
    return "\n".join(lines)
