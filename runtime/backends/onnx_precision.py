"""Mixed precision by ONNX types: a float32 graph rewritten to fp16 except where fp16 overflows.

TensorRT 11 networks are always strongly typed, and TensorRT 10 builds them
that way here too (:mod:`dreamwire.backends.trt_build`): the ONNX tensor
types, not builder flags, decide each layer's precision. A plain fp16 export
would then run normalization and softmax in fp16, where SD UNets and the full
VAE overflow (variance sums, exp). NVIDIA's recipe is to export float32 and
cast (ModelOpt AutoCast, TensorRT ``samples/python/strongly_type_autocast``);
this module is that pass, small and specific to these graphs:

- ``InstanceNormalization`` (how opset-17 exports spell GroupNorm, between two
  Reshapes), ``LayerNormalization``, ``GroupNormalization`` and (``Log``)``Softmax``
  stay float32, with their scale/bias initializers;
- the **timestep path** stays float32: every node whose floating inputs all
  derive from the ``timestep`` input (and constants) — the sinusoidal embedding
  and the time-embedding MLP. In fp16, ``sin(999 * f)`` has a 0.5-wide argument
  grid; diffusers itself computes this embedding in float32;
- everything else becomes fp16: initializers and ``Constant`` values are
  converted (clipped to ±65504), ``Cast(to=FLOAT)`` becomes ``Cast(to=FLOAT16)``,
  and one ``Cast`` is inserted wherever a tensor crosses between the regions.
  Inputs an operator schema fixes to float32 (``Resize`` roi/scales) stay float32.
- graph inputs and outputs become fp16 except ``timestep``, so an fp16 engine's
  I/O buffers take the engine's fp16 tensors without a conversion kernel.

Graphs with control-flow subgraphs are refused (ours have none). The result is
checked by the tests with ``onnx.checker`` and strict type inference, and run on
onnxruntime's CPU provider against the float32 graph.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FP16_MAX = 65504.0
KEEP_FP32_OPS = frozenset({"InstanceNormalization", "LayerNormalization", "GroupNormalization", "Softmax",
                           "LogSoftmax"})
FP32_INPUTS = ("timestep", "time_ids")  # time_ids: SDXL's size micro-conditioning, also a sinusoidal embedding
_SCHEMA_FP32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}  # ONNX schema: roi/scales are tensor(float) always
_ANY_INPUT_OPS = frozenset({"Cast", "Shape", "Size"})  # take any input type: never cast in front of them
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})
_EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GB limit, with room for the graph itself


@dataclass(frozen=True)
class PassReport:
    fp32_nodes: int
    fp16_nodes: int
    casts: int
    clipped: int  # weights outside the fp16 range, clipped to +-65504


def _onnx():
    import onnx

    return onnx


def elem_types(model) -> dict[str, int]:
    """ONNX element type of every tensor, from shape inference (which needs no weight data)."""
    onnx = _onnx()
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.output, *g.value_info)
             if vi.type.HasField("tensor_type")}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
                elif a.name in ("value_float", "value_floats"):
                    types[n.output[0]] = onnx.TensorProto.FLOAT
    return {k: v for k, v in types.items() if v}


def fp32_nodes(graph, types: dict[str, int], keep_ops: Iterable[str] = KEEP_FP32_OPS,
               fp32_inputs: Iterable[str] = FP32_INPUTS) -> set[int]:
    """Indices of the nodes that stay float32: ``keep_ops`` and the region fed only by ``fp32_inputs``.

    Only *valued* float tensors count: those computed from a float graph input.
    Constants and shape arithmetic (a ``Cast`` of a ``Shape``) carry no activation
    values, so they neither join the region nor keep a node out of it.
    """
    FLOAT = _onnx().TensorProto.FLOAT
    keep_ops = frozenset(keep_ops)
    valued = {i.name for i in graph.input if types.get(i.name) == FLOAT}
    region = set(fp32_inputs) & valued
    keep = set()
    for idx, n in enumerate(graph.node):  # ONNX graphs are topologically sorted
        if n.op_type in _SUBGRAPH_OPS:
            raise ValueError(f"mixed precision: {n.op_type} subgraphs are not supported")
        inputs = [i for i in n.input if i in valued]
        if inputs:
            valued.update(o for o in n.output if types.get(o) == FLOAT)
        if n.op_type in keep_ops:
            keep.add(idx)
        elif inputs and all(i in region for i in inputs):
            keep.add(idx)
            region.update(n.output)
    return keep


def _to_fp16(array: np.ndarray) -> tuple[np.ndarray, int]:
    clipped = int(np.count_nonzero(np.abs(array) > FP16_MAX))
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16), clipped


class _Rewriter:
    """Applies one precision decision to a graph in place (see the module docstring)."""

    def __init__(self, graph, types: dict[str, int], keep: set[int], fp32_io: frozenset[str]) -> None:
        onnx = _onnx()
        self.onnx, self.graph, self.types, self.keep, self.fp32_io = onnx, graph, types, keep, fp32_io
        self.FLOAT, self.HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
        self.produced: dict[str, int] = {}
        self.casts: dict[tuple[str, int], str] = {}
        self.nodes: list = []
        self.clipped = 0
        self.inits = {t.name: t for t in graph.initializer}
        self.const_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        self.variants: dict[tuple[str, int], str] = {}

    def precision(self, idx: int) -> int:
        return self.FLOAT if idx in self.keep else self.HALF

    def required(self, node, pos: int, precision: int) -> int | None:
        if node.op_type in _ANY_INPUT_OPS:
            return None
        if pos in _SCHEMA_FP32_INPUTS.get(node.op_type, ()):
            return self.FLOAT
        return precision

    def constant_needs(self) -> dict[str, set[int]]:
        needs: dict[str, set[int]] = defaultdict(set)
        for idx, n in enumerate(self.graph.node):
            for pos, name in enumerate(n.input):
                if name in self.inits or name in self.const_nodes:
                    if self.types.get(name) == self.FLOAT:
                        need = self.required(n, pos, self.precision(idx))
                        if need is not None:
                            needs[name].add(need)
        return needs

    def convert_constants(self) -> None:
        """Each float constant in the type its consumers need; a second copy only where both are needed."""
        numpy_helper = self.onnx.numpy_helper
        for name, needs in self.constant_needs().items():
            if self.HALF not in needs:
                self.variants[(name, self.FLOAT)] = name
                continue
            if name in self.inits:
                half, clipped = _to_fp16(numpy_helper.to_array(self.inits[name]))
            else:
                half, clipped = _to_fp16(numpy_helper.to_array(self._const_tensor(name)))
            self.clipped += clipped
            target = name if needs == {self.HALF} else f"{name}__fp16"
            tensor = numpy_helper.from_array(half, target)
            if name in self.inits and target == name:
                self.inits[name].CopyFrom(tensor)
            elif name in self.inits:
                self.graph.initializer.append(tensor)
            else:
                node = self.onnx.helper.make_node("Constant", [], [target], value=tensor)
                if target == name:
                    self.const_nodes[name].CopyFrom(node)
                else:
                    self.nodes.append(node)
            self.variants[(name, self.HALF)] = target
            self.variants[(name, self.FLOAT)] = name

    def _const_tensor(self, name: str):
        for a in self.const_nodes[name].attribute:
            if a.name == "value":
                return a.t
            if a.name in ("value_float", "value_floats"):
                values = np.float32(a.f) if a.name == "value_float" else np.asarray(a.floats, np.float32)
                return self.onnx.numpy_helper.from_array(np.asarray(values), name)
        raise ValueError(f"Constant {name} has no float value")

    def cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            out = f"{name}__to_{'fp16' if to == self.HALF else 'fp32'}"
            self.nodes.append(self.onnx.helper.make_node("Cast", [name], [out], to=to, name=f"{out}_cast"))
            self.casts[key] = out
            self.produced[out] = to
        return self.casts[key]

    def fix_attributes(self, node) -> None:
        """Ops whose float output type is an attribute follow their node's precision."""
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == self.FLOAT:
                a.i = self.HALF
            elif node.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == self.FLOAT:
                half, _ = _to_fp16(self.onnx.numpy_helper.to_array(a.t))
                a.t.CopyFrom(self.onnx.numpy_helper.from_array(half, a.t.name))

    def run(self) -> None:
        g = self.graph
        for vi in g.input:
            if vi.name in self.inits or vi.type.tensor_type.elem_type != self.FLOAT:
                continue
            if vi.name not in self.fp32_io:
                vi.type.tensor_type.elem_type = self.HALF
            self.produced[vi.name] = vi.type.tensor_type.elem_type
        self.convert_constants()
        for idx, n in enumerate(list(g.node)):
            p = self.precision(idx)
            for pos, name in enumerate(n.input):
                if not name or self.types.get(name) != self.FLOAT:
                    continue
                need = self.required(n, pos, p)
                if need is None:
                    continue
                if (name, need) in self.variants:
                    n.input[pos] = self.variants[(name, need)]
                elif self.produced.get(name, self.FLOAT) != need:
                    n.input[pos] = self.cast(name, need)
            if p == self.HALF:
                self.fix_attributes(n)
            for o in n.output:
                if self.types.get(o) == self.FLOAT:
                    self.produced[o] = p
            self.nodes.append(n)
        self.retype_outputs()
        del g.node[:]
        g.node.extend(self.nodes)
        del g.value_info[:]  # stale types; consumers re-infer

    def retype_outputs(self) -> None:
        for vo in self.graph.output:
            if self.types.get(vo.name) != self.FLOAT:
                continue
            want = self.FLOAT if vo.name in self.fp32_io else self.HALF
            if self.produced.get(vo.name, self.FLOAT) != want:
                inner = f"{vo.name}__inner"
                for n in self.nodes:
                    n.input[:] = [inner if i == vo.name else i for i in n.input]
                    n.output[:] = [inner if o == vo.name else o for o in n.output]
                self.nodes.append(self.onnx.helper.make_node("Cast", [inner], [vo.name], to=want,
                                                             name=f"{vo.name}_cast"))
            vo.type.tensor_type.elem_type = want


def mixed_precision(model, *, keep_ops: Iterable[str] = KEEP_FP32_OPS, fp32_inputs: Iterable[str] = FP32_INPUTS,
                    types: dict[str, int] | None = None) -> PassReport:
    """Rewrite ``model`` (an onnx ModelProto with its weights loaded) in place; see the module docstring."""
    types = types if types is not None else elem_types(model)
    g = model.graph
    keep = fp32_nodes(g, types, keep_ops, fp32_inputs)
    rewriter = _Rewriter(g, types, keep, frozenset(fp32_inputs))
    rewriter.run()
    return PassReport(fp32_nodes=len(keep), fp16_nodes=len(rewriter.nodes) - len(keep) - len(rewriter.casts),
                      casts=len(rewriter.casts), clipped=rewriter.clipped)


def convert_file(src: Path, dst: Path, **options) -> PassReport:
    """``src`` (float32 ONNX, weights inline or external) -> ``dst`` mixed fp16/fp32, external data if large.

    Types are inferred before the weights are loaded, so a float32 SD UNet
    (3.4 GB, over protobuf's 2 GB limit) goes through shape inference as well.
    """
    onnx = _onnx()
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.load(str(src), load_external_data=False)
    types = elem_types(model)
    load_external_data_for_model(model, str(src.parent))
    report = mixed_precision(model, types=types, **options)
    dst.parent.mkdir(parents=True, exist_ok=True)
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights > _EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{dst.name}.data")
    else:
        onnx.save_model(model, str(dst))
    return report
