"""Running one TensorRT engine: an execution context and I/O buffers per call shape, optional CUDA graphs.

**One context per shape.** A captured CUDA graph bakes in everything the
context had when it was captured (shapes, tensor addresses, internal
buffers); calling ``set_input_shape`` on that context for another shape and
then replaying the old graph would run stale state. So every distinct call
shape (a :class:`~dreamwire.backends.trt_plan.BindingPlan`) gets its own
context whose shapes and addresses are set once and never change, and its own
graph. The contexts are created with
``ExecutionContextAllocationStrategy.USER_MANAGED`` and all point at one
scratch block (``set_device_memory``), sized ``device_memory_size_v2`` (the
maximum over profiles): several contexts may share device memory as long as
they never run at the same time (release/10.1 ``include/NvInferRuntime.h:3614-3630``,
``setDeviceMemoryV2``), which :meth:`GraphPool.exclusive` guarantees. Without
that, each context would reserve its own maximum-shape scratch, GBs for an SD
UNet, per step count.

**Streams.** ``execute_async_v3`` runs on torch's *current* stream, where the
engine thread puts its dedicated stream. On the legacy default stream
TensorRT adds ``cudaDeviceSynchronize()`` calls (release/11.1
``NvInferRuntime.h:4639-4640``), so a caller still on the default stream is
moved to a private side stream, ordered with events both ways.

**Graphs.** The first call of a shape runs uncaptured (TensorRT finishes
shape-dependent setup lazily), then one ``execute_async_v3`` is captured
through the backend's :class:`~dreamwire.backends.cudagraph.GraphPool`
(``capture_error_mode="thread_local"``, shared pool, counted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamwire.backends.cudagraph import GraphPool, copy_inputs
from dreamwire.backends.trt_plan import BindingPlan, ProfileShapes, binding_plan
from dreamwire.engine.spec import ModelSpec


@dataclass
class _Shape:
    context: Any
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    graph: torch.cuda.CUDAGraph | None = None


class EngineRunner:
    """One deserialized engine; per call shape a context, I/O buffers allocated once, and a graph."""

    def __init__(self, trt: Any, plan: Path, component: str, dims: ModelSpec, profile: ProfileShapes,
                 device: torch.device, pool: GraphPool, *, cuda_graph: bool = False,
                 unet_config: dict | None = None) -> None:
        self.trt, self.component, self.dims, self.profile = trt, component, dims, profile
        self.unet_config = unet_config  # the residual shapes of the ControlNet graphs follow the UNet's blocks
        self.device, self.pool, self.cuda_graph = device, pool, cuda_graph
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        # TensorRT binds an engine, and every context made from it, to the CUDA device current when it is
        # deserialized (TensorRT developer guide, FAQ "How do I use TensorRT on multiple GPUs?": call
        # cudaSetDevice() before deserializing), so both run under torch.cuda.device(self.device):
        # otherwise cuda:1 gets the current device's (usually cuda:0's) context.
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {plan}; delete it to rebuild (built by another version?)")
        self.scratch: torch.Tensor | None = None  # shared with the backend's other engines when it sets one
        self._shapes: dict[BindingPlan, _Shape] = {}
        self._side: torch.cuda.Stream | None = None

    @property
    def memory_size(self) -> int:
        """Scratch bytes any context of this engine may need (the maximum over its profiles)."""
        return int(self.engine.device_memory_size_v2)

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self.trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                 trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BF16: torch.bfloat16}
        return table[self.engine.get_tensor_dtype(name)]

    def _create(self, plan: BindingPlan) -> _Shape:
        """A context for exactly this shape: shapes, addresses and scratch set once, never changed."""
        with torch.cuda.device(self.device):  # see __init__: a context belongs to the current device
            context = self.engine.create_execution_context(self.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.component}")
        ins = tuple(torch.empty(s, dtype=self._torch_dtype(n), device=self.device) for n, s in plan.inputs)
        outs = tuple(torch.empty(s, dtype=self._torch_dtype(n), device=self.device) for n, s in plan.outputs)
        ok = all(bool(context.set_input_shape(name, shape)) for name, shape in plan.inputs)
        if ok:
            self._check_output_shapes(context, plan)
        for (name, _), buf in zip(plan.inputs + plan.outputs, ins + outs):
            ok &= bool(context.set_tensor_address(name, buf.data_ptr()))
        if not ok:
            raise RuntimeError(f"TensorRT rejected the {self.component} bindings {plan} (see the log above)")
        needed = int(context.update_device_memory_size_for_shapes())
        if self.scratch is None:
            self.scratch = torch.empty(self.memory_size, dtype=torch.uint8, device=self.device)
        if needed > self.scratch.numel():
            raise RuntimeError(f"TensorRT {self.component} needs {needed} B of scratch, {self.scratch.numel()} given")
        context.set_device_memory(self.scratch.data_ptr(), self.scratch.numel())
        return _Shape(context, ins, outs)

    def _check_output_shapes(self, context: Any, plan: BindingPlan) -> None:
        """Raise unless every output buffer has the shape TensorRT infers for these input shapes.

        The buffers are sized from our own shape rules (:func:`dreamwire.backends.trt_plan.output_shapes`);
        TensorRT writes what *it* infers, so a wrong rule would be a silent out-of-bounds write.
        ``IExecutionContext.get_tensor_shape`` gives the inferred shape once every input shape is set
        (release/10.1 ``python/src/infer/pyCore.cpp:1056``; a ``Dims``, iterable through ``__getitem__``,
        ``pyFoundationalTypes.cpp:99-104,247``).
        """
        for name, shape in plan.outputs:
            inferred = tuple(int(d) for d in context.get_tensor_shape(name))
            if inferred != tuple(shape):
                raise RuntimeError(
                    f"TensorRT {self.component}: output {name!r} is {inferred} for inputs {dict(plan.inputs)}, "
                    f"but its buffer was sized {tuple(shape)}; the engine does not match this version's graphs "
                    f"(delete the cached engine to rebuild, or report it)")

    @contextlib.contextmanager
    def _work_stream(self) -> Iterator[torch.cuda.Stream]:
        """Torch's current stream, unless that is the legacy default stream: then a side stream, event-ordered."""
        current = torch.cuda.current_stream(self.device)
        if current.cuda_stream != torch.cuda.default_stream(self.device).cuda_stream:
            yield current
            return
        if self._side is None:
            self._side = torch.cuda.Stream(device=self.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            yield self._side
        current.wait_stream(self._side)

    def _execute(self, shape: _Shape, stream: torch.cuda.Stream) -> None:
        if not shape.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.component} failed")

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        """The engine's (first) output for ``args``, the graph inputs in order."""
        return self.run_all(*args)[0]

    def run_all(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every output (a ControlNet engine gives its down residuals and the mid residual)."""
        plan = binding_plan(self.component, tuple(tuple(a.shape) for a in args), self.dims, self.profile,
                            self.unet_config)
        with self.pool.exclusive():
            shape = self._shapes.get(plan)
            if shape is None:
                shape = self._shapes[plan] = self._create(plan)
            copy_inputs(shape.inputs, args)
            with self._work_stream() as stream:
                if shape.graph is not None:
                    shape.graph.replay()
                else:  # uncaptured (the first run of a shape also finishes TensorRT's lazy setup), then capture
                    self._execute(shape, stream)
                    if self.cuda_graph:  # capture only records: the outputs keep this run's results
                        shape.graph, _ = self.pool.capture(
                            lambda: self._execute(shape, torch.cuda.current_stream(self.device)))
            return tuple(o.clone() for o in shape.outputs)  # buffers are reused by the next call
