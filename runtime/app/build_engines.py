"""``dreamwire build-engines``: export ONNX graphs and build TensorRT engines ahead of a show.

Building the first time a performance starts is the original's worst user
experience (minutes of silence). This command does it beforehand with a
progress bar per stage and prints a rough time/VRAM estimate first; the
results land in the same cache the backends read, so the next ``dreamwire
run`` with the same model/profile starts immediately.

Each engine actually built is timed and printed next to its estimate, and the
pair is recorded (``<cache>/engines/build-times.json``, per GPU and TensorRT
version); later estimates on that GPU are scaled by the median of the recorded
actual/estimate ratios, so the figure printed before a build converges on
what that machine really takes.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamwire.app.config import RuntimeConfig
from dreamwire.control.schema import MAX_STEPS
from dreamwire.control.settings import boolean, choice, integer, number, same_as, setting, text
from dreamwire.engine.api import GUIDANCE_MODES

if TYPE_CHECKING:  # the profiles (and torch behind them) are imported when engines are built, not for --help
    from dreamwire.backends.profiles import BatchProfile, ResolutionProfile

# Ballpark costs (a desktop GPU; CPU export ~3x slower); printed as estimates, never relied on.
_EXPORT_S_PER_GPARAM = 25.0
_BUILD_S_PER_GPARAM = 300.0
_BUILD_S_BASE = 20.0
_ACT_BYTES_PER_LATENT_PX = 320 * 2 * 24  # channels x fp16 x live layers, per batch row


@dataclass(frozen=True)
class Estimate:
    export_s: float
    build_parts: tuple[tuple[str, float], ...]  # (component, seconds) for a TensorRT build
    disk_gb: float
    vram_gb: float
    correction: float = 1.0  # measured/estimated on this GPU so far (1.0: no record yet)

    @property
    def build_s(self) -> float:
        return sum(s for _, s in self.build_parts)

    def component_s(self, component: str) -> float:
        return dict(self.build_parts)[component]

    def lines(self, target: str) -> list[str]:
        out = [f"  export ONNX      ~{self.export_s:.0f} s", f"  disk             ~{self.disk_gb:.1f} GB"]
        if target == "tensorrt":
            note = f" (x{self.correction:.2f} from builds measured on this GPU)" if self.correction != 1.0 else ""
            out += [f"  TensorRT build   ~{self.build_s / 60:.1f} min{note}",
                    f"  peak VRAM        ~{self.vram_gb:.1f} GB during the build"]
        return out


def estimate(unet_params: int, vae_params: int, res: ResolutionProfile, batch: BatchProfile, *,
             dtype_bytes: int = 2, target: str = "tensorrt", correction: float = 1.0) -> Estimate:
    """Rough time/disk/VRAM for exporting (and building) all three components.

    ``correction`` scales the build times (see :func:`correction_factor`).
    """
    g = (unet_params + 2 * vae_params) / 1e9
    weights = (unet_params + vae_params) * dtype_bytes
    disk = weights * (2 if target == "tensorrt" else 1)  # ONNX + plan
    latent_px = (res.maximum // 8) ** 2
    activations = batch.maximum * latent_px * _ACT_BYTES_PER_LATENT_PX
    dynamic = 1.5 if res.minimum != res.maximum else 1.0
    parts = {"unet": unet_params, "encoder": vae_params, "decoder": vae_params}  # VAE halves at full resolution
    build = tuple((c, 0.0 if target != "tensorrt" else
                   (_BUILD_S_BASE / 3 + _BUILD_S_PER_GPARAM * n / 1e9) * dynamic * correction)
                  for c, n in parts.items())
    return Estimate(export_s=5 + _EXPORT_S_PER_GPARAM * g, build_parts=build, disk_gb=disk / 1e9,
                    vram_gb=(3 * weights + activations) / 1e9, correction=correction)


# --- measured build times -------------------------------------------------------------------------

_HISTORY = 20  # records kept per GPU/TensorRT pair


def history_path() -> Path:
    from dreamwire.backends.cache import engines_dir

    return engines_dir() / "build-times.json"


def _read_history(path: Path) -> dict[str, list[dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def correction_factor(path: Path, machine: str) -> float:
    """Median of actual/estimated build time over the builds recorded for ``machine`` (1.0 if none)."""
    ratios = [r["actual_s"] / r["estimated_s"] for r in _read_history(path).get(machine, [])
              if isinstance(r, dict) and r.get("estimated_s", 0) > 0 and r.get("actual_s", 0) > 0]
    return statistics.median(ratios) if ratios else 1.0


def record_build(path: Path, machine: str, component: str, estimated_s: float, actual_s: float) -> None:
    """Append one measured build, *un*corrected estimate and all, so later corrections don't compound."""
    from dreamwire.backends.cache import atomic_write

    data = _read_history(path)
    rows = [*data.get(machine, []), {"component": component, "estimated_s": estimated_s, "actual_s": actual_s}]
    data[machine] = rows[-_HISTORY:]
    atomic_write(path, json.dumps(data, indent=1).encode())


def parse_resolution(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


TARGETS = ("auto", "tensorrt", "onnxruntime")


@dataclass
class BuildOptions:
    """``dreamwire build-engines`` options; the model options are the same as ``dreamwire run``'s."""

    model: str = same_as(RuntimeConfig, "model")
    taesd: str | None = same_as(RuntimeConfig, "taesd")
    lcm_lora: str = same_as(RuntimeConfig, "lcm_lora")
    loras: tuple[tuple[str, float], ...] = same_as(RuntimeConfig, "loras")
    device: str | None = same_as(RuntimeConfig, "device")
    frame_buffer: int = same_as(RuntimeConfig, "frame_buffer")
    resolution: str = setting("512x512", "WxH the show runs at (the profile's optimum)", text)
    profile: str = setting("256-1024", "pixel range one engine serves, MIN-MAX[/STEP]; resolution changes inside "
                           "need no rebuild", text)
    backend: str = setting("auto", "what to build for: TensorRT engines (CUDA) or ONNX graphs only",
                           choice(TARGETS))
    guidance: str = setting("self", "guidance method the engines serve", choice(GUIDANCE_MODES))
    steps: int = setting(2, "typical step count (the batch TensorRT tunes for)", integer(1, MAX_STEPS))
    max_steps: int = setting(MAX_STEPS, "largest step count the engine accepts", integer(1, MAX_STEPS))
    fp32: bool = setting(False, "build float32 engines (no fp16 cast pass, TF32 off)", boolean)
    workspace_gb: float | None = setting(None, "TensorRT builder workspace limit in GB", number(0.1, 1024.0),
                                         default_doc="3/4 of the VRAM free when the build starts")
    estimate_only: bool = setting(False, "print the estimate and exit", boolean)


def main(o: BuildOptions) -> int:
    try:
        return _run(o)
    except (ValueError, RuntimeError, OSError) as exc:  # ModelLoadError, BackendUnavailable, CacheError, ...
        print(f"dreamwire build-engines: error: {exc}", file=sys.stderr)
        return 2


def _run(args: Any) -> int:
    import torch
    from tqdm import tqdm

    from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
    from dreamwire.backends.select import tensorrt_importable

    width, height = parse_resolution(args.resolution)
    res = ResolutionProfile.parse(args.profile, opt=max(width, height))
    res.check(width, height)
    batch = BatchProfile(frames=args.frame_buffer, guidance=args.guidance, steps=min(args.steps, args.max_steps),
                         max_steps=args.max_steps)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    target = args.backend
    if target == "auto":
        target = "tensorrt" if device.type == "cuda" and tensorrt_importable() else "onnxruntime"
    machine = ""
    if target == "tensorrt":
        from dreamwire.backends.cache import gpu_signature
        from dreamwire.backends.trt_build import import_tensorrt

        trt = import_tensorrt()  # fail before loading gigabytes of weights
        if device.type != "cuda":
            raise ValueError("TensorRT engines need --device cuda")
        machine = f"{gpu_signature(device)}|tensorrt {trt.__version__}"
    else:
        from dreamwire.backends.onnxrt import import_onnxruntime

        import_onnxruntime()

    from dreamwire.models.load import load_model

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    lora = None if args.lcm_lora.lower() == "none" else args.lcm_lora
    t0 = time.perf_counter()
    with tqdm(total=1, desc="load model", unit="stage", leave=True) as bar:
        parts = load_model(args.model, taesd=args.taesd, lcm_lora=lora, loras=args.loras,
                           device=device, dtype=dtype)
        bar.update()
    n_unet = sum(p.numel() for p in parts.unet.parameters())
    n_vae = sum(p.numel() for p in parts.vae.parameters())
    factor = correction_factor(history_path(), machine) if machine else 1.0
    est = estimate(n_unet, n_vae, res, batch, dtype_bytes=2 if dtype == torch.float16 else 4, target=target,
                   correction=factor)
    print(f"building {target} for {args.model} at {width}x{height}, profile {res.label()}, batch {batch.label()}")
    print(f"UNet {n_unet / 1e6:.0f}M params, VAE {n_vae / 1e6:.1f}M params; rough estimate:")
    print("\n".join(est.lines(target)))
    if args.estimate_only:
        return 0
    from dreamwire.backends.export import COMPONENTS, cached_onnx

    # TensorRT builds from float32 exports (precision is chosen per layer); onnxruntime runs the model's dtype.
    export_dtype = torch.float32 if target == "tensorrt" else None
    for comp in COMPONENTS:
        with tqdm(total=1, desc=f"export {comp}", unit="stage") as bar:
            path = cached_onnx(parts, comp, height=res.opt, width=res.opt, dtype=export_dtype)
            bar.update()
        print(f"  {comp}: {path}")
    if target == "tensorrt":
        measured = _build_trt(parts, res, batch, fp16=not args.fp32, workspace_gb=args.workspace_gb)
        report_build_times(est, measured, machine)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def report_build_times(est: Estimate, measured: dict[str, float], machine: str) -> None:
    """Print estimate vs actual for every engine built, and record the pair for later estimates."""
    for comp, actual in measured.items():
        guess = est.component_s(comp)
        print(f"  build {comp}: estimated ~{guess:.0f} s, took {actual:.0f} s ({actual / guess:.2f}x)")
        record_build(history_path(), machine, comp, guess / est.correction, actual)
    if not measured:
        print("  engines were already in the cache: nothing built")


def _build_trt(parts, res: ResolutionProfile, batch: BatchProfile, *, fp16: bool, workspace_gb: float | None
               ) -> dict[str, float]:
    """Build (or reuse) the three engines; returns the seconds of each one actually built."""
    from tqdm import tqdm

    from dreamwire.backends.export import COMPONENTS
    from dreamwire.backends.trt_build import EngineSpec, ensure_engines

    spec = EngineSpec(res, batch, fp16=fp16, workspace_gb=workspace_gb)
    measured: dict[str, float] = {}
    for comp in COMPONENTS:
        with tqdm(total=0, desc=f"build {comp}", unit="step") as bar:
            def progress(_c: str, phase: str, step: int, total: int, _bar=bar) -> None:
                _bar.set_postfix_str(phase[:40])
                _bar.total = max(total, 1)
                _bar.n = step
                _bar.refresh()

            path = ensure_engines(parts, spec, progress=progress, components=(comp,),
                                  on_built=lambda c, secs: measured.__setitem__(c, secs))[comp]
        print(f"  {comp}: {path}")
    return measured
