"""GPU benchmark, offline: sd-turbo UNet + TAESD architectures with random weights, fp16, per backend.

No download: the UNet comes from the config shipped in ``dreamwire/configs``
and TAESD is ``AutoencoderTiny()``'s defaults (its real layout), so timings
match the real models'. Each backend runs encode, decode and the UNet at the
stream batch for 1 and 4 steps (RCFG self, one frame per call: batch = steps);
a frame costs encode + one batched UNet call + decode. Run it with
``examples/gpu_bench.sh`` or ``dreamwire bench --gpu``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from types import SimpleNamespace
from typing import Any

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.profiles import ResolutionProfile
from dreamwire.backends.select import make_backend
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.spec import ModelSpec
from dreamwire.models.parts import ModelParts

SOURCE = "bench:sd-turbo-unet+taesd-random"


def sd_turbo_config() -> dict:
    return json.loads(resources.files("dreamwire").joinpath("configs/sd_turbo_unet.json").read_text("utf-8"))


def random_parts(device: torch.device, dtype: torch.dtype, seed: int = 0) -> ModelParts:
    """sd-turbo-shaped ModelParts with random weights, initialised directly on ``device``."""
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    cfg = sd_turbo_config()
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(cfg).to(dtype).eval().requires_grad_(False)
        vae = AutoencoderTiny().to(dtype).eval().requires_grad_(False)
    spec = ModelSpec(kind="turbo", alphas_cumprod=torch.linspace(0.999, 0.005, 1000), latent_channels=4,
                     out_channels=int(cfg["out_channels"]), vae_scale_factor=8,
                     vae_scaling_factor=float(vae.config.scaling_factor), text_tokens=77,
                     text_dim=int(cfg["cross_attention_dim"]), unet_downsamples=len(cfg["block_out_channels"]) - 1)
    fingerprint = hashlib.sha256(f"{json.dumps(cfg, sort_keys=True)}|{seed}".encode()).hexdigest()[:24]
    return ModelParts(source=SOURCE, spec=spec, unet=unet, vae=vae, text_encoder=None,
                      tokenizer=SimpleNamespace(model_max_length=77), fingerprint=fingerprint)


def time_ms(fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, iters: int) -> float:
    """Mean milliseconds per call, back to back (throughput, as in a live loop)."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return 1000 * (time.perf_counter() - t0) / iters
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def backend_options(name: str, size: int, max_steps: int) -> dict:
    if name == "tensorrt":  # a static 1-image profile keeps the build to a few minutes
        return {"profile": ResolutionProfile.parse(str(size)), "steps": max_steps, "max_steps": max_steps}
    return {}


def bench_backend(name: str, parts: ModelParts, size: int, steps: Sequence[int], warmup: int, iters: int) -> dict:
    dev, dt = parts.unet.device, parts.unet.dtype
    t0 = time.perf_counter()
    be = make_backend(name, parts, config=EngineConfig(width=size, height=size, guidance="self"),
                      **backend_options(name, size, max(steps)))
    setup_s = time.perf_counter() - t0
    g = torch.Generator(dev).manual_seed(0)
    img = torch.rand(1, 3, size, size, device=dev, dtype=dt, generator=g) * 2 - 1
    lat = torch.randn(1, 4, size // 8, size // 8, device=dev, dtype=dt, generator=g)
    cond = torch.randn(1, 77, 1024, device=dev, dtype=dt, generator=g)
    t_first = time.perf_counter()
    res = {"setup_s": setup_s,
           "encode_ms": time_ms(lambda: be.encode(img), dev, warmup, iters),
           "decode_ms": time_ms(lambda: be.decode(lat), dev, warmup, iters)}
    for n in steps:
        x = lat.expand(n, -1, -1, -1).contiguous()
        t = torch.linspace(999, 99, n, device=dev).long()
        c = cond.expand(n, -1, -1)
        unet_ms = time_ms(lambda x=x, t=t, c=c: be.unet(x, t, c), dev, warmup, iters)
        frame = res["encode_ms"] + unet_ms + res["decode_ms"]
        res[f"unet_b{n}_ms"] = unet_ms
        res[f"fps_{n}step"] = 1000 / frame
    res["first_calls_s"] = time.perf_counter() - t_first  # includes per-shape compile/capture for 'compile'
    return res


def format_table(results: dict, steps: Sequence[int]) -> str:
    cols = ["encode_ms", "decode_ms", *(f"unet_b{n}_ms" for n in steps), *(f"fps_{n}step" for n in steps)]
    lines = ["| backend | setup s | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|---" * (len(cols) + 2) + "|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} |")
            continue
        lines.append(f"| {name} | {r['setup_s']:.0f} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines)


def run_gpu(o: Any) -> int:
    """``dreamwire bench --gpu``: every backend in ``o.gpu_backends`` on the random sd-turbo parts."""
    device = torch.device(o.device or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("dreamwire bench --gpu: no CUDA device; pass --device cpu --fp32 for a (slow) dry run", file=sys.stderr)
        return 2
    steps = [int(s) for s in o.gpu_steps.split(",")]
    parts = random_parts(device, torch.float32 if o.fp32 else torch.float16)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {gpu}; torch {torch.__version__}; {o.size}x{o.size}; steps {steps}; "
          f"UNet {sum(p.numel() for p in parts.unet.parameters()) / 1e6:.0f}M params (random weights)")
    results: dict[str, dict] = {}
    for name in o.gpu_backends.split(","):
        print(f"-- {name}: building/compiling and timing ...", flush=True)
        try:
            results[name] = bench_backend(name, parts, o.size, steps, o.warmup, o.iters)
        except BackendUnavailable as exc:  # e.g. TensorRT not installed: reported in the table, not hidden
            results[name] = {"error": str(exc).split(" (")[0]}
        print(json.dumps(results[name]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps({"device": gpu, "size": o.size, "steps": steps, "results": results}, indent=1) if o.json
          else format_table(results, steps))
    return 0
