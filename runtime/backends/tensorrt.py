"""TensorRT 10 backend: engines built from the cached ONNX exports, run on torch's current stream.

Engines are built once per (model, LoRAs, resolution profile, batch profile,
dtype, TensorRT version, GPU) with fp16 and one dynamic optimization profile
(see :mod:`dreamwire.backends.trt_plan`), so resolution or step-count changes
inside the profile reuse the same engine. Per input shape the runner
allocates its I/O buffers once, sets shapes and addresses, then each call is
copy-in, ``execute_async_v3`` (optionally a CUDA graph replay), copy-out.

``import tensorrt`` happens only when this backend is constructed or an
engine is built; a missing or broken install raises
:class:`BackendUnavailable` naming the pip extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamwire.backends.cache import ensure_entry, gpu_signature
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.backends.export import COMPONENTS, cached_onnx, check_size, onnx_key
from dreamwire.backends.profiles import MAX_STEPS, BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import BindingPlan, ProfileShapes, binding_plan, engine_key, profile_shapes
from dreamwire.engine.config import EngineConfig
from dreamwire.engine.spec import ModelSpec
from dreamwire.models.parts import ModelParts

log = logging.getLogger(__name__)
PLAN_FILE = "engine.plan"


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # the wheel without its native libs raises either
        raise BackendUnavailable(
            f"backend 'tensorrt' needs TensorRT 10 with its CUDA libraries: pip install 'dreamwire[tensorrt]' "
            f"on a machine with an NVIDIA GPU ({type(exc).__name__}: {exc})") from exc
    return tensorrt


# --- building ---------------------------------------------------------------------------------


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


def build_plan(onnx_path: Path, plan_path: Path, shapes: ProfileShapes, *, fp16: bool = True,
               workspace_gb: float | None = None, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Parse ONNX, build a serialized engine with one optimization profile, write it to ``plan_path``."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from file, so external weight files resolve
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    monitor = _progress_monitor(trt, progress) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    with plan_path.open("wb") as fh:  # IHostMemory exposes the buffer protocol
        fh.write(serialized)
    return plan_path


@dataclass(frozen=True)
class EngineSpec:
    """What to build: resolution and batch profiles plus builder options."""

    resolution: ResolutionProfile
    batch: BatchProfile
    fp16: bool = True
    workspace_gb: float | None = None


def ensure_engines(parts: ModelParts, spec: EngineSpec, *,
                   progress: Callable[[str, str, int, int], None] | None = None,
                   components: tuple[str, ...] = COMPONENTS) -> dict[str, Path]:
    """Export (or reuse) each component's ONNX and build (or reuse) its engine; returns plan paths."""
    trt = import_tensorrt()
    if parts.unet.device.type != "cuda":
        raise BackendUnavailable("backend 'tensorrt' needs the model on a CUDA device (--device cuda)")
    dims = parts.spec
    gpu = gpu_signature(parts.unet.device)
    plans = {}
    for comp in components:
        key = engine_key(onnx_key(parts, comp), spec.resolution, spec.batch, trt_version=trt.__version__,
                         gpu=gpu, fp16=spec.fp16, workspace_gb=spec.workspace_gb)
        shapes = profile_shapes(comp, spec.resolution, spec.batch, dims)
        cb = (lambda phase, step, total, _c=comp: progress(_c, phase, step, total)) if progress else None

        def build(folder: Path, _comp=comp, _shapes=shapes, _cb=cb) -> None:
            # The ONNX export is needed (and verified) only when the engine itself must be (re)built.
            onnx = cached_onnx(parts, _comp, height=spec.resolution.opt, width=spec.resolution.opt)
            build_plan(onnx, folder / PLAN_FILE, _shapes, fp16=spec.fp16, workspace_gb=spec.workspace_gb,
                       progress=_cb)

        plans[comp] = ensure_entry(key, build) / PLAN_FILE
    return plans


# --- running ----------------------------------------------------------------------------------


@dataclass
class _Bound:
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    graph: torch.cuda.CUDAGraph | None = None


class EngineRunner:
    """One deserialized engine and its execution context; I/O buffers allocated once per shape."""

    def __init__(self, trt: Any, plan: Path, component: str, dims: ModelSpec, profile: ProfileShapes,
                 device: torch.device, *, cuda_graph: bool = False) -> None:
        self.trt, self.component, self.dims, self.profile = trt, component, dims, profile
        self.device, self.cuda_graph = device, cuda_graph
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {plan}; delete it to rebuild (built by another version?)")
        self.context = self.engine.create_execution_context()
        self._bound: dict[BindingPlan, _Bound] = {}
        self._active: BindingPlan | None = None

    def _torch_dtype(self, name: str) -> torch.dtype:
        t = self.trt.DataType
        table = {t.FLOAT: torch.float32, t.HALF: torch.float16, t.INT32: torch.int32, t.INT64: torch.int64,
                 t.BF16: torch.bfloat16}
        return table[self.engine.get_tensor_dtype(name)]

    def _allocate(self, plan: BindingPlan) -> _Bound:
        ins = tuple(torch.empty(s, dtype=self._torch_dtype(n), device=self.device) for n, s in plan.inputs)
        outs = tuple(torch.empty(s, dtype=self._torch_dtype(n), device=self.device) for n, s in plan.outputs)
        return _Bound(ins, outs)

    def _activate(self, plan: BindingPlan, bound: _Bound) -> None:
        """Point the context at this shape's buffers (only when the shape changed since the last call)."""
        if self._active == plan:
            return
        ok = True
        for (name, shape), buf in zip(plan.inputs, bound.inputs):
            ok &= bool(self.context.set_input_shape(name, shape))
            ok &= bool(self.context.set_tensor_address(name, buf.data_ptr()))
        for (name, _), buf in zip(plan.outputs, bound.outputs):
            ok &= bool(self.context.set_tensor_address(name, buf.data_ptr()))
        if not ok:
            raise RuntimeError(f"TensorRT rejected the {self.component} bindings {plan} (see the log above)")
        self._active = plan

    def _execute(self) -> None:
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.component} failed")

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        plan = binding_plan(self.component, tuple(tuple(a.shape) for a in args), self.dims, self.profile)
        bound = self._bound.get(plan)
        if bound is None:
            bound = self._bound[plan] = self._allocate(plan)
        self._activate(plan, bound)
        for buf, a in zip(bound.inputs, args):
            buf.copy_(a, non_blocking=True)
        if self.cuda_graph:
            if bound.graph is None:
                self._execute()  # first run outside capture: TensorRT finishes lazy setup for this shape
                bound.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(bound.graph):
                    self._execute()
            bound.graph.replay()
        else:
            self._execute()
        return bound.outputs[0].clone()  # the engine keeps results across calls; buffers are reused


class TensorRTBackend:
    """Backend protocol over three TensorRT engines (UNet, VAE encoder, VAE decoder)."""

    name = "tensorrt"

    def __init__(self, parts: ModelParts, config: EngineConfig | None = None, *,
                 profile: ResolutionProfile | None = None, steps: int = 2, max_steps: int = MAX_STEPS,
                 fp16: bool = True, workspace_gb: float | None = None, cuda_graph: bool = True) -> None:
        trt = import_tensorrt()
        config = config or EngineConfig()
        if parts.unet.device.type != "cuda":
            raise BackendUnavailable("backend 'tensorrt' needs the model on a CUDA device (--device cuda)")
        check_size(parts.spec, config.width, config.height)
        res = profile or ResolutionProfile.around(config.width, config.height)
        res.check(config.width, config.height)
        batch = BatchProfile(frames=config.frames, guidance=config.guidance, steps=min(steps, max_steps),
                             max_steps=max_steps)
        spec = EngineSpec(res, batch, fp16=fp16, workspace_gb=workspace_gb)
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        self.spec = spec
        dims = parts.spec
        plans = ensure_engines(parts, spec)
        self._run = {c: EngineRunner(trt, plans[c], c, dims, profile_shapes(c, res, batch, dims), self.device,
                                     cuda_graph=cuda_graph) for c in COMPONENTS}

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
             ) -> torch.Tensor:
        t = timestep.to(device=self.device, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        return self._run["unet"](sample, t, encoder_hidden_states).to(self.dtype)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._run["encoder"](images).to(self.dtype)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run["decoder"](latents).to(self.dtype)
