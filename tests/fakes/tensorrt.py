"""A stand-in ``tensorrt`` module of one real release's Python API, for CPU tests of the TensorRT glue.

Its enums and classes carry exactly the names NVIDIA's bindings of that release
define (``tests/data/tensorrt_api.json``, extracted from NVIDIA/TensorRT's
``python/src``), so code reaching for a name the release lacks (``BuilderFlag.FP16``
on 11.x) fails with ``AttributeError`` as it would on the real module. Behaviour
is faked only where the tests need it, and every faked class is checked to
define no public name its real counterpart lacks.
"""

from __future__ import annotations

import ctypes
import json
import math
import types
from collections.abc import Callable
from pathlib import Path

import torch

API = json.loads((Path(__file__).parent.parent / "data" / "tensorrt_api.json").read_text(encoding="utf-8"))
# Values that matter: NetworkDefinitionCreationFlag::kSTRONGLY_TYPED is 1 in 10.x (release/10.1 NvInfer.h:9446)
# and 0 in 11.x (release/11.1 NvInfer.h:11471).
STRONGLY_TYPED = {"10": 1, "11": 0}
ENUMS = ("BuilderFlag", "MemoryPoolType", "DataType", "ExecutionContextAllocationStrategy",
         "NetworkDefinitionCreationFlag")


def release_of(version: str) -> str:
    """The stored release a version string belongs to: its own major.minor, else the newest of its major."""
    major, minor = version.split(".")[:2]
    releases = API["releases"]
    if f"{major}.{minor}" in releases:
        return f"{major}.{minor}"
    return max((r for r in releases if r.split(".")[0] == major), key=lambda r: int(r.split(".")[1]))


def tensor_at(ptr: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 CPU tensor at address ``ptr`` (what a fake kernel reads and writes through)."""
    n = math.prod(shape)
    return torch.frombuffer((ctypes.c_float * n).from_address(ptr), dtype=torch.float32).view(shape)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *call) -> None:
        self.calls.append(call)

    def named(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


def infer_sd_shapes(inputs: dict[str, tuple[int, ...]], name: str) -> tuple[int, ...]:
    """The output shape TensorRT infers for SD's UNet/VAE graphs (VAE factor 8, 4 latent channels)."""
    if name == "model_output":
        return inputs["sample"]
    if name == "images":
        b, _, h, w = inputs["latents"]
        return (b, 3, 8 * h, 8 * w)
    if name == "latents":
        b, _, h, w = inputs["images"]
        return (b, 4, h // 8, w // 8)
    raise KeyError(f"the fake infers no shape for {name!r}: pass infer= to make()")


def make(version: str, *, cuda=None, kernel: Callable | None = None,
         infer: Callable[[dict, str], tuple[int, ...]] = infer_sd_shapes) -> types.ModuleType:
    """The fake module. ``cuda``: a :class:`tests.fakes.cuda.FakeCuda` that runs ``kernel(context)`` on execute.

    ``infer(input_shapes, output_name)``: the output shape the engine reports through
    ``IExecutionContext.get_tensor_shape`` once the input shapes are set. Engines and contexts
    record the fake CUDA device current when they were made (``device``), as TensorRT binds them to it.
    """
    rel = API["releases"][release_of(version)]
    classes = rel["classes"]
    log = Recorder()
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.log = log
    mod.fail_build = False
    for enum in ENUMS:
        setattr(mod, enum, types.SimpleNamespace(**{m: f"{enum}.{m}" for m in classes[enum] if m.isupper()}))
    mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED = STRONGLY_TYPED[version.split(".")[0]]

    class Logger:
        def __init__(self, severity=None) -> None:
            self.severity = severity

    for level in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"):
        setattr(Logger, level, f"Severity.{level}")

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class ITimingCache:
        def __init__(self, blob: bytes) -> None:
            if blob.startswith(b"corrupt"):
                raise RuntimeError("could not deserialize the timing cache")
            self.blob = blob

        def serialize(self) -> bytes:
            return self.blob + b"+timings"

    class IBuilderConfig:
        def __init__(self) -> None:
            self.cache = None
            self.progress_monitor = None

        def set_flag(self, flag) -> None:
            log("set_flag", flag)

        def clear_flag(self, flag) -> None:
            log("clear_flag", flag)

        def set_memory_pool_limit(self, pool, size) -> None:
            log("set_memory_pool_limit", pool, size)

        def create_timing_cache(self, blob) -> ITimingCache:
            log("create_timing_cache", bytes(blob))
            return ITimingCache(bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache:
            return self.cache

        def add_optimization_profile(self, profile) -> int:
            log("add_optimization_profile", dict(profile.shapes))
            return 0

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            self.shapes[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = logger

        def create_network(self, flags=0) -> object:
            log("create_network", flags)
            return object()

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            log("build_serialized_network", config.progress_monitor is not None)
            return None if mod.fail_build else bytearray(b"serialized-plan")

    class OnnxParser:
        def __init__(self, network, logger) -> None:
            self.num_errors = 0

        def parse_from_file(self, path) -> bool:
            log("parse_from_file", path)
            return Path(path).is_file()

        def get_error(self, index) -> str:
            return "error"

    class IExecutionContext:
        def __init__(self, strategy) -> None:
            self.strategy = strategy
            self.shapes: dict = {}
            self.addresses: dict = {}
            self.memory = None
            self.executed_on: list[int] = []
            self.device = cuda.device_index if cuda is not None else None
            log("context", self)

        def set_input_shape(self, name, shape) -> bool:
            log("set_input_shape", self, name, tuple(shape))
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name) -> tuple[int, ...]:
            return self.shapes[name] if name in self.shapes else tuple(infer(self.shapes, name))

        def set_tensor_address(self, name, ptr) -> bool:
            self.addresses[name] = ptr
            return True

        def update_device_memory_size_for_shapes(self) -> int:
            return 1024

        def set_device_memory(self, ptr, size) -> None:
            self.memory = (ptr, size)

        def execute_async_v3(self, stream_handle) -> bool:
            self.executed_on.append(stream_handle)
            cuda.launch(lambda: kernel(self))
            return True

    class ICudaEngine:
        device_memory_size_v2 = 4096

        def get_tensor_dtype(self, name):
            return mod.DataType.FLOAT

        def create_execution_context(self, strategy=None) -> IExecutionContext:
            return IExecutionContext(strategy)

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, blob) -> ICudaEngine:
            engine = ICudaEngine()
            engine.device = cuda.device_index if cuda is not None else None
            return engine

    fakes = {"Logger": Logger, "IProgressMonitor": IProgressMonitor, "ITimingCache": ITimingCache,
             "IBuilderConfig": IBuilderConfig, "IOptimizationProfile": IOptimizationProfile, "Builder": Builder,
             "OnnxParser": OnnxParser, "IExecutionContext": IExecutionContext, "ICudaEngine": ICudaEngine,
             "Runtime": Runtime}
    for name, cls in fakes.items():
        extra = {a for a in vars(cls) if not a.startswith("_")} - set(classes[name])
        assert not extra, f"fake tensorrt.{name} defines {extra}, which TensorRT {version} does not have"
        setattr(mod, name, cls)
    return mod
