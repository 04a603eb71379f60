"""Building TensorRT engines (10.1+ and 11.x) from the cached ONNX exports.

- **Strongly typed.** Precision comes from the ONNX tensor types, never from
  builder flags: TensorRT 11 has no ``BuilderFlag.FP16`` and is always strongly
  typed (release/11.1 ``include/NvInfer.h:11464-11471``: the flag is deprecated
  and ignored, so it is not passed there); TensorRT 10 gets
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (release/10.1
  ``include/NvInfer.h:9442-9446``). Note the enum value differs (1 in 10.x, 0 in
  11.x), so it is only ever read from the module, never hard-coded.
  fp16 engines build from :mod:`dreamwire.backends.onnx_precision`'s rewrite of
  the float32 export; ``fp16=False`` (``build-engines --fp32``) builds the float32
  export unchanged and clears ``BuilderFlag.TF32`` (on by default; NvInfer.h
  ``kTF32``), so float32 means float32.
- **Timing cache** per (TensorRT version, GPU), loaded before and saved after
  every build (``IBuilderConfig.create_timing_cache``/``set_timing_cache``/
  ``get_timing_cache``, ``ITimingCache.serialize``; python/src/infer/pyCore.cpp
  release/11.1:1738-1745), so rebuilding for another profile skips tactic timing
  already done. The original StreamDiffusion keeps one too
  (``acceleration/tensorrt/utilities.py``).
- **Workspace** from the VRAM free when the build starts (``torch.cuda.mem_get_info``)
  unless the user sets one (:func:`dreamwire.backends.trt_plan.workspace_bytes`).
- **Atomic files.** The plan and the timing cache are written with
  :func:`dreamwire.backends.cache.atomic_write`; the plan's cache entry is also
  built in a temporary folder and renamed (:mod:`dreamwire.models.store`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamwire.backends import trt_flavour
from dreamwire.backends.cache import atomic_write, engines_dir, ensure_entry, gpu_signature
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.export import ONNX_FILE, cached_onnx, control_components, onnx_key
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import (
    PRECISION_PASS,
    ProfileShapes,
    engine_key,
    profile_shapes,
    timing_cache_key,
    workspace_bytes,
)
from dreamwire.models.parts import ModelParts
from dreamwire.models.store import key_digest

log = logging.getLogger(__name__)
PLAN_FILE = "engine.plan"
SUPPORTED = "TensorRT 10.1+ or 11.x"


def import_tensorrt() -> Any:
    """``tensorrt``, once its CUDA flavour is known to match torch's (:mod:`dreamwire.backends.trt_flavour`)."""
    trt_flavour.check(torch.version.cuda)
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # the wheel without its native libs raises either
        raise BackendUnavailable(
            f"backend 'tensorrt' needs {SUPPORTED} with its CUDA libraries: "
            f"{trt_flavour.install_command(torch.version.cuda)} on a machine with an NVIDIA GPU "
            f"({type(exc).__name__}: {exc})") from exc
    return tensorrt


def major_version(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def network_flags(trt: Any) -> int:
    """``create_network`` flags for a strongly typed network on this TensorRT."""
    if major_version(trt) >= 11:
        return 0  # always strongly typed; the flag is deprecated and ignored
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def timing_cache_path(trt_version: str, gpu: str, root: Path | None = None) -> Path:
    return (root or engines_dir()) / "timing" / f"{key_digest(timing_cache_key(trt_version, gpu))}.cache"


def _attach_timing_cache(config: Any, path: Path | None) -> None:
    """Give the builder the saved timing cache, or an empty one when there is none or it is unusable.

    A cache from another TensorRT or GPU is refused by ``set_timing_cache(...,
    ignore_mismatch=False)``; an unreadable file makes ``create_timing_cache``
    fail. Either is logged and the build goes on without the old timings.
    """
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    if blob:
        try:
            if config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
                return
            reason = "made by another TensorRT version or GPU"
        except (RuntimeError, TypeError, ValueError) as exc:
            reason = str(exc)
        log.warning("TensorRT timing cache %s is unusable (%s); building with an empty one", path, reason)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _progress_monitor(trt: Any, callback: Callable[[str, int, int], None]) -> Any:
    """A trt.IProgressMonitor forwarding (phase, step, steps) to ``callback`` (e.g. a tqdm bar)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            callback(phase_name, 0, num_steps)

        def step_complete(self, phase_name, step):
            callback(phase_name, step + 1, self.steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()


def build_plan(onnx_path: Path, plan_path: Path, shapes: ProfileShapes, *, workspace: int, strict_fp32: bool = False,
               timing_cache: Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Parse ONNX into a strongly typed network, build it with one optimization profile, write the plan."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from file, so external weight files resolve
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    _attach_timing_cache(config, timing_cache)
    if progress is not None:
        config.progress_monitor = _progress_monitor(trt, progress)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write(plan_path, serialized)  # IHostMemory exposes the buffer protocol
    if timing_cache is not None:
        atomic_write(timing_cache, config.get_timing_cache().serialize())
    return plan_path


@dataclass(frozen=True)
class EngineSpec:
    """What to build: resolution and batch profiles plus builder options."""

    resolution: ResolutionProfile
    batch: BatchProfile
    fp16: bool = True
    workspace_gb: float | None = None


def mixed_onnx(parts: ModelParts, component: str, source: Path) -> Path:
    """The fp16/fp32 rewrite of the float32 export ``source``, cached next to it."""
    from dreamwire.backends.onnx_precision import convert_file

    key = dataclasses.replace(onnx_key(parts, component, dtype=torch.float32), fmt="onnx-mixed",
                              options=(("pass", str(PRECISION_PASS)),))

    def build(folder: Path) -> None:
        report = convert_file(source, folder / ONNX_FILE)
        log.info("%s: %d layers kept float32, %d fp16, %d casts, %d weights clipped to the fp16 range",
                 component, report.fp32_nodes, report.fp16_nodes, report.casts, report.clipped)

    return ensure_entry(key, build) / ONNX_FILE


def free_vram(device: torch.device) -> int:
    torch.cuda.empty_cache()  # memory torch only caches is free for the builder
    free, _total = torch.cuda.mem_get_info(device)  # torch/cuda/memory.py: mem_get_info
    return int(free)


def ensure_engines(parts: ModelParts, spec: EngineSpec, *,
                   progress: Callable[[str, str, int, int], None] | None = None,
                   components: tuple[str, ...] | None = None,
                   on_built: Callable[[str, float], None] | None = None) -> dict[str, Path]:
    """Export (or reuse) each component's ONNX and build (or reuse) its engine; returns plan paths.

    ``on_built(component, seconds)`` is called after each engine actually built
    (not for cached ones), so callers can compare estimates with real build times. ``components``
    defaults to every graph the model runs: with ControlNets the residual-input UNet and one engine per
    ControlNet (:func:`~dreamwire.backends.export.control_components`).
    """
    trt = import_tensorrt()
    if parts.unet.device.type != "cuda":
        raise BackendUnavailable("backend 'tensorrt' needs the model on a CUDA device (--device cuda)")
    gpu = gpu_signature(parts.unet.device)
    cache = timing_cache_path(trt.__version__, gpu)
    plans = {}
    unet_config = dict(parts.unet.config)
    for comp in components or control_components(parts):
        key = engine_key(onnx_key(parts, comp, dtype=torch.float32), spec.resolution, spec.batch,
                         trt_version=trt.__version__, gpu=gpu, fp16=spec.fp16, workspace_gb=spec.workspace_gb)
        shapes = profile_shapes(comp, spec.resolution, spec.batch, parts.spec, unet_config)
        cb = (lambda phase, step, total, _c=comp: progress(_c, phase, step, total)) if progress else None

        def build(folder: Path, _comp=comp, _shapes=shapes, _cb=cb) -> None:
            # The ONNX export is needed (and verified) only when the engine itself must be (re)built.
            onnx = cached_onnx(parts, _comp, height=spec.resolution.opt, width=spec.resolution.opt,
                               dtype=torch.float32)
            if spec.fp16:
                onnx = mixed_onnx(parts, _comp, onnx)
            t0 = time.perf_counter()
            build_plan(onnx, folder / PLAN_FILE, _shapes, strict_fp32=not spec.fp16, timing_cache=cache,
                       workspace=workspace_bytes(free_vram(parts.unet.device), spec.workspace_gb), progress=_cb)
            if on_built is not None:
                on_built(_comp, time.perf_counter() - t0)

        plans[comp] = ensure_entry(key, build) / PLAN_FILE
    return plans
