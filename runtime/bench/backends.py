"""CPU/GPU comparison of backends on the full engine: frames/s and milliseconds per component.

Backends are timed in alternating rounds and each figure is the median over
rounds, so a noisy neighbour on a shared machine slows all of them alike and
a burst of load in one round does not skew the result. ``dreamwire bench
--compare torch,onnxruntime`` runs :func:`compare_backends`.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Sequence

import torch

from dreamwire.backends.assemble import build_engine
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig


class TimedBackend:
    """Wraps a backend and accumulates wall time per method (synchronising CUDA so times are real)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.device, self.dtype = inner.name, inner.device, inner.dtype
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def _timed(self, method: str, *args: torch.Tensor) -> torch.Tensor:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        out = getattr(self.inner, method)(*args)
        sync()
        self.seconds[method] += time.perf_counter() - t0
        self.calls[method] += 1
        return out

    def unet(self, sample, timestep, encoder_hidden_states):
        return self._timed("unet", sample, timestep, encoder_hidden_states)

    def encode(self, images):
        return self._timed("encode", images)

    def decode(self, latents):
        return self._timed("decode", latents)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def compare_backends(model: str = "tiny", size: int = 256, frames: int = 40,
                     backends: Sequence[str] = ("torch", "onnxruntime"), *, steps: int = 2,
                     guidance: str = "self", device: str = "cpu", warmup: int = 3, rounds: int = 8,
                     options: dict[str, dict] | None = None) -> dict:
    """Frames/s and ms per component of each backend on the same engine config and inputs.

    Returns ``{backend: {fps, ms_per_frame, unet_ms, encode_ms, decode_ms, other_ms}, "speedup": {...}}``
    where speedup is each backend's fps over the first backend's. ``options`` maps a backend name
    (or ``name:label`` to compare settings of one backend) to its constructor options.
    """
    cfg = EngineConfig(width=size, height=size, guidance=guidance)
    params = Params({"steps": steps, "similarity_filter": False})
    engines, timers = {}, {}
    for name in backends:
        eng = build_engine(model, backend=name.split(":")[0], device=device, config=cfg, params=params,
                           lcm_lora=None, backend_options=(options or {}).get(name))
        timers[name] = TimedBackend(eng.backend)
        eng.backend = timers[name]
        engines[name] = eng
    gen = torch.Generator("cpu").manual_seed(0)
    images = [(torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device) for _ in range(8)]
    for name, eng in engines.items():
        for i in range(warmup):
            eng.step(images[i % len(images)])
        timers[name].reset()
    per_round = max(1, frames // rounds)
    samples: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _ in range(rounds):
        for name, eng in engines.items():
            before = dict(timers[name].seconds)
            t0 = time.perf_counter()
            for i in range(per_round):
                eng.step(images[i % len(images)])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            row = {"frame": time.perf_counter() - t0}
            row.update({k: timers[name].seconds.get(k, 0.0) - before.get(k, 0.0) for k in ("unet", "encode", "decode")})
            samples[name].append({k: 1000 * v / per_round for k, v in row.items()})
    result: dict = {}
    for name in backends:
        med = {k: statistics.median(r[k] for r in samples[name]) for k in ("frame", "unet", "encode", "decode")}
        result[name] = {"fps": 1000 / med["frame"], "ms_per_frame": med["frame"],
                        **{f"{k}_ms": med[k] for k in ("unet", "encode", "decode")},
                        "other_ms": med["frame"] - med["unet"] - med["encode"] - med["decode"],
                        "frames": per_round * rounds}
    base = result[backends[0]]["fps"]
    result["speedup"] = {name: result[name]["fps"] / base for name in backends}
    result["config"] = {"model": model, "size": size, "steps": steps, "guidance": guidance, "device": device,
                        "threads": torch.get_num_threads()}
    return result


def format_table(result: dict) -> str:
    names = [k for k in result if k not in ("speedup", "config")]
    lines = ["| backend | frames/s | ms/frame | unet ms | encode ms | decode ms | other ms | speedup |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = result[name]
        lines.append(f"| {name} | {r['fps']:.1f} | {r['ms_per_frame']:.1f} | {r['unet_ms']:.1f} | "
                     f"{r['encode_ms']:.1f} | {r['decode_ms']:.1f} | {r['other_ms']:.1f} | "
                     f"{result['speedup'][name]:.2f}x |")
    return "\n".join(lines)
