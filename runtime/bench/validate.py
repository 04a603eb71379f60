"""``dreamwire bench --gpu``: the one-shot validation run of the GPU path, correctness first, then speed.

Written for a bare CUDA machine without internet (sd-turbo UNet + TAESD
architectures with random weights, fp16, 512²) and run end to end on CPU in
the test suite (``--gpu-arch tiny --device cpu``), so the first GPU run is not
its first run. It checks what would break a show (fp16 against fp32, every
backend against eager torch, no NaN/inf over hundreds of frames, the step
timer surviving a failed step, no capture after ready while the step count
changes live) and measures each backend that can run; ``--report DIR``
writes ``results.json``, the plots and ``summary.txt``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.profiles import ResolutionProfile
from dreamwire.backends.select import make_backend
from dreamwire.bench.backends import TimedBackend
from dreamwire.bench.engine import T_INDEX, compare_engines
from dreamwire.bench.overhead import measure_overhead
from dreamwire.bench.random_models import RandomPrompts, random_parts
from dreamwire.bench.timing import sync
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig
from dreamwire.engine.stream import StreamEngine
from dreamwire.engine.warmup import warm_up
from dreamwire.live.imageops import to_model_input, to_uint8
from dreamwire.live.timing import StepTimer
from dreamwire.live.transfer import PinnedRing
from dreamwire.models.parts import ModelParts

FP16_TOLERANCE = 5e-2  # max |fp16 - fp32| / max |fp32| of the decoded frame, after 3 steps
BACKEND_TOLERANCE = {torch.float16: 2e-2, torch.float32: 1e-3}  # each backend against eager torch


def _engine(backend: Any, parts: ModelParts, size: int, steps: int, prompts: Any = None) -> StreamEngine:
    cfg = EngineConfig(width=size, height=size, guidance="self")
    prompts = prompts or RandomPrompts(parts.spec, backend.device, backend.dtype)
    return StreamEngine(backend, prompts, parts.spec, cfg, Params({"t_index_list": T_INDEX[steps]}))


def _frames(size: int, count: int, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator("cpu").manual_seed(1)
    base = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    return [base.roll(4 * k, dims=-1).to(device, dtype) for k in range(count)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6))


def _backend_options(name: str, size: int) -> dict:
    if name == "tensorrt":  # a static profile at the run's size keeps the build to minutes
        return {"profile": ResolutionProfile.parse(str(size)), "steps": 4, "max_steps": 4}
    return {}


def _make(name: str, parts: ModelParts, size: int) -> Any:
    cfg = EngineConfig(width=size, height=size, guidance="self")
    return make_backend(name, parts, config=cfg, **_backend_options(name, size))


def _outputs(engine: StreamEngine, frames: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([engine.step(f).images for f in frames])


# --- checks ---------------------------------------------------------------------------------------------


def check_precision(o: Any, parts: ModelParts, device: torch.device) -> dict:
    if parts.unet.dtype != torch.float16:
        return {"ok": True, "skipped": "the run is float32"}
    ref = random_parts(device, torch.float32, arch=o.gpu_arch)
    frames = _frames(o.size, 3, device, torch.float32)
    a = _outputs(_engine(_make("torch", parts, o.size), parts, o.size, 2), [f.half() for f in frames])
    b = _outputs(_engine(_make("torch", ref, o.size), ref, o.size, 2), frames)
    rel = _rel(a, b)
    del ref
    return {"ok": rel <= FP16_TOLERANCE, "rel_max_diff": rel, "tolerance": FP16_TOLERANCE}


def check_agreement(backend: Any, eager: Any, parts: ModelParts, size: int) -> dict:
    frames = _frames(size, 3, eager.device, eager.dtype)
    rel = _rel(_outputs(_engine(backend, parts, size, 2), frames), _outputs(_engine(eager, parts, size, 2), frames))
    tol = BACKEND_TOLERANCE[eager.dtype]
    return {"ok": rel <= tol, "rel_max_diff": rel, "tolerance": tol}


def check_finite(engine: StreamEngine, count: int) -> dict:
    """Every output finite over ``count`` frames; one device-side flag, read once at the end."""
    frames = _frames(engine.config.width, 8, engine.device, engine.dtype)
    finite = torch.ones((), dtype=torch.bool, device=engine.device)
    for k in range(count):
        finite &= torch.isfinite(engine.step(frames[k % len(frames)]).images).all()
    return {"ok": bool(finite), "frames": count}


def check_timer(engine: StreamEngine, frames: int = 6) -> dict:
    """A step that fails mid-stream must not stop later steps from being timed."""
    timer = StepTimer(engine.device)
    images = _frames(engine.config.width, 1, engine.device, engine.dtype)[0]
    readings = []
    for k in range(frames):
        try:
            with timer.step():
                engine.step(images)
                if k == 2:
                    raise RuntimeError("injected failure")
        except RuntimeError:
            pass
        readings.append(timer.last)
    sync(engine.device)
    with timer.step():
        engine.step(images)
    return {"ok": timer.last > 0 and readings[-1] > 0, "last_ms": 1000 * timer.last}


def check_no_capture_after_ready(backend: Any, parts: ModelParts, size: int) -> dict:
    if not hasattr(backend, "captures"):
        return {"ok": True, "skipped": f"{backend.name} captures nothing per shape"}
    engine = _engine(backend, parts, size, 1)
    warm_up(engine, max_steps=4)
    ready = backend.captures
    frames = _frames(size, 2, engine.device, engine.dtype)
    for n in (1, 4, 2):
        engine.update(engine.params.replace(t_index_list=T_INDEX[n]))
        for f in frames:
            engine.step(f)
    return {"ok": backend.captures == ready, "captures_at_ready": ready, "captures_after": backend.captures}


# --- performance ----------------------------------------------------------------------------------------


def fps(engine: StreamEngine, frames: int) -> float:
    images = _frames(engine.config.width, 4, engine.device, engine.dtype)
    for k in range(3):
        engine.step(images[k % 4])
    sync(engine.device)
    t0 = time.perf_counter()
    for k in range(frames):
        engine.step(images[k % 4])
    sync(engine.device)
    return frames / (time.perf_counter() - t0)


def conversion_ms(device: torch.device, dtype: torch.dtype, size: int, frames: int) -> dict:
    """The loop's per-frame pixel work outside the engine: upload + to_model_input, to_uint8 + download."""
    ring = PinnedRing(device)
    pixels = (torch.rand(size, size, 4) * 255).to(torch.uint8).numpy()
    images = torch.rand(1, 3, size, size, device=device, dtype=dtype) * 2 - 1
    t = {"upload_and_convert": 0.0, "convert_and_download": 0.0}
    for _ in range(frames):
        t0 = time.perf_counter()
        to_model_input(ring.upload(pixels), "BGRA", (size, size), device, dtype)
        sync(device)
        t1 = time.perf_counter()
        ring.download(to_uint8(images, "BGRA")[0])
        t["upload_and_convert"] += t1 - t0
        t["convert_and_download"] += time.perf_counter() - t1
    return {k: 1000 * v / frames for k, v in t.items()}


def measure_backend(o: Any, name: str, backend: Any, parts: ModelParts, prompts: Any = None) -> dict:
    device = backend.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = [int(s) for s in o.steps.split(",")]
    res: dict = {"fps": {str(n): fps(_engine(backend, parts, o.size, n, prompts), o.frames) for n in steps}}
    res.update(compare_engines(_engine(backend, parts, o.size, 2, prompts), o.size, o.rounds, o.per_round,
                               steps=tuple(n for n in steps if n in T_INDEX), filter_calls=max(20, o.frames)))
    timed = TimedBackend(backend)
    engine = _engine(timed, parts, o.size, 2, prompts)
    fps(engine, 2)
    timed.reset()
    fps(engine, o.frames)
    res["ms_per_call"] = {k: 1000 * timed.seconds[k] / max(1, timed.calls[k]) for k in ("encode", "unet", "decode")}
    res["ms_per_call"].update(conversion_ms(device, backend.dtype, o.size, o.frames))
    overhead = measure_overhead(engine=_engine(backend, parts, o.size, 2, prompts), frames=o.frames, warmup=3,
                                width=o.size, height=o.size)
    res["loop"] = {k: v for k, v in overhead.items() if k != "latency_ms"}
    res["latency_ms"] = overhead["latency_ms"]
    if device.type == "cuda":
        res["peak_vram_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    res["captures"] = getattr(backend, "captures", 0)
    return res


def run_validation(o: Any) -> dict:
    """Every check and every backend's figures as one JSON-able dict; ``ok`` is True when all checks pass."""
    device = torch.device(o.device or "cuda")
    dtype = torch.float32 if (o.fp32 or device.type == "cpu") else torch.float16
    t0 = time.perf_counter()
    parts = random_parts(device, dtype, arch=o.gpu_arch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out: dict = {"kind": "gpu-validation", "device": name, "torch": torch.__version__, "size": o.size,
                 "dtype": str(dtype).removeprefix("torch."), "arch": o.gpu_arch, "checks": {}, "backends": {},
                 "date": time.strftime("%Y-%m-%d %H:%M")}
    checks = out["checks"]
    checks["fp16_vs_fp32"] = check_precision(o, parts, device)
    eager = _make("torch", parts, o.size)
    checks["finite_outputs"] = check_finite(_engine(eager, parts, o.size, 4), o.finite_frames)
    checks["timer_survives_failure"] = check_timer(_engine(eager, parts, o.size, 2))
    for backend_name in o.backends.split(","):
        print(f"-- {backend_name}: building and measuring ...", file=sys.stderr, flush=True)
        try:
            backend = eager if backend_name == "torch" else _make(backend_name, parts, o.size)
        except BackendUnavailable as exc:  # e.g. no TensorRT here: reported, never hidden
            out["backends"][backend_name] = {"error": str(exc).split(" (")[0]}
            continue
        if backend_name != "torch":
            checks[f"{backend_name}_vs_torch"] = check_agreement(backend, eager, parts, o.size)
        checks[f"no_capture_after_ready_{backend_name}"] = check_no_capture_after_ready(backend, parts, o.size)
        out["backends"][backend_name] = measure_backend(o, backend_name, backend, parts)
    out["ok"] = all(c["ok"] for c in checks.values())
    out["seconds"] = time.perf_counter() - t0
    return out
