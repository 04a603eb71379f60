"""The fp16/fp32 ONNX pass TensorRT's strongly typed engines are built from (runtime/backends/onnx_precision.py).

On the tiny model's real exports: onnx.checker and strict type inference accept the result; norms,
softmax and the timestep path are float32, everything else fp16; and onnxruntime (CPU) runs it within
1% of the float32 graph's output scale (max |fp16 - fp32| <= 0.01 * max |fp32|; measured 0.05-0.2%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from dreamwire.backends.onnx_precision import (  # noqa: E402
    FP16_MAX,
    KEEP_FP32_OPS,
    convert_file,
    elem_types,
    fp32_nodes,
    mixed_precision,
)

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
REL_TOL = 1e-2


@pytest.fixture(scope="module")
def graphs(tiny_parts, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(float32 export, mixed rewrite) per component of the tiny model."""
    from dreamwire.backends.export import COMPONENTS, cached_onnx

    out = tmp_path_factory.mktemp("mixed")
    pairs = {}
    for comp in COMPONENTS:
        src = cached_onnx(tiny_parts, comp, height=128, width=128, dtype=torch.float32)
        dst = out / f"{comp}.onnx"
        convert_file(src, dst)
        pairs[comp] = (src, dst)
    return pairs


def _strict_types(path: Path) -> tuple[object, dict[str, int]]:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # raises on a mismatch
    return inferred, elem_types(model)


def _float_ios(node, types) -> list[tuple[str, int]]:
    return [(n, types[n]) for n in (*node.input, *node.output) if n and types.get(n) in (F32, F16)]


def test_unet_norms_softmax_and_timestep_path_stay_float32_rest_fp16(graphs):
    model, types = _strict_types(graphs["unet"][1])
    nodes = model.graph.node
    kept = [n for n in nodes if n.op_type in KEEP_FP32_OPS]
    assert {n.op_type for n in kept} >= {"InstanceNormalization", "LayerNormalization", "Softmax"}
    for n in kept:  # GroupNorm (as InstanceNormalization), LayerNorm, softmax: float32 in and out
        assert all(t == F32 for _, t in _float_ios(n, types)), n.name
    for n in (n for n in nodes if n.op_type in ("Sin", "Cos")):  # the sinusoidal timestep embedding
        assert all(t == F32 for _, t in _float_ios(n, types)), n.name
    heavy = [n for n in nodes if n.op_type in ("Conv", "MatMul")]
    assert heavy and all(types[n.output[0]] == F16 for n in heavy)  # the compute runs in fp16
    time_mlp = [n for n in nodes if n.op_type == "Gemm" and "time_embedding" in n.name]
    assert time_mlp and all(types[n.output[0]] == F32 for n in time_mlp)
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert inputs == {"sample": F16, "timestep": F32, "encoder_hidden_states": F16}
    assert model.graph.output[0].type.tensor_type.elem_type == F16
    weights = [t.data_type for t in model.graph.initializer]
    assert weights.count(F16) > 5 * weights.count(F32)  # only norm scales/biases and time-MLP weights stay float32


@pytest.mark.parametrize("component", ["encoder", "decoder"])
def test_vae_graphs_are_fp16_except_resize_scales(graphs, component):
    model, types = _strict_types(graphs[component][1])
    for n in model.graph.node:
        for pos, name in enumerate(n.input):
            if types.get(name) == F32:
                assert n.op_type == "Resize" and pos in (1, 2), (n.op_type, name)  # ONNX fixes scales to float32


def _feeds(session, component: str, dtype16: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"sample": (2, 4, 16, 16), "encoder_hidden_states": (2, 77, 32), "images": (2, 3, 128, 128),
              "latents": (2, 4, 16, 16)}
    out = {}
    for i in session.get_inputs():
        if i.name == "timestep":
            out[i.name] = np.array([999.0, 259.0], np.float32)
        else:
            x = rng.standard_normal(shapes[i.name]).astype(np.float32)
            out[i.name] = np.clip(x, -1, 1) if i.name == "images" else x
        if dtype16 and i.type == "tensor(float16)":
            out[i.name] = out[i.name].astype(np.float16)
    return out


@pytest.mark.parametrize("component", ["unet", "encoder", "decoder"])
def test_mixed_graph_matches_float32_on_onnxruntime(graphs, component):
    src, dst = graphs[component]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s32 = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
    ref = s32.run(None, _feeds(s32, component, False))[0]
    out = s16.run(None, _feeds(s16, component, True))[0]
    assert out.dtype == np.float16 and out.shape == ref.shape
    err = np.abs(out.astype(np.float32) - ref).max()
    assert err <= REL_TOL * np.abs(ref).max(), f"{component}: max |diff| {err:.3g} vs scale {np.abs(ref).max():.3g}"


def _synthetic() -> object:
    """x -> Mul(c) -> LayerNorm(scale=c) -> Softmax -> y, plus Resize(scales), a huge weight and Cast(to=FLOAT)."""
    c = helper.make_tensor("c", F32, [4], [1.0, 2.0, 3.0, 4.0])
    big = helper.make_tensor("big", F32, [4], [1e6, -1e6, 1.0, 0.5])
    zero = helper.make_tensor("zero", F32, [4], [0.0] * 4)
    nodes = [
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["m2"]),
        helper.make_node("LayerNormalization", ["m2", "c", "zero"], ["ln"], axis=-1),
        helper.make_node("Softmax", ["ln"], ["y"], axis=-1),
        helper.make_node("Add", ["x", "big"], ["b"]),
        helper.make_node("Shape", ["b"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=F32),
        helper.make_node("ReduceSum", ["shape_f"], ["n"], keepdims=0),
        helper.make_node("Mul", ["b", "n"], ["bn"]),
        helper.make_node("Constant", [], ["scales"], value=helper.make_tensor("s", F32, [4], [1, 1, 1, 2])),
        helper.make_node("Resize", ["bn", "", "scales"], ["z"], mode="nearest"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [1, 1, 2, 4])],
                              [helper.make_tensor_value_info("y", F32, [1, 1, 2, 4]),
                               helper.make_tensor_value_info("z", F32, [1, 1, 2, 8])], [c, big, zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_pass_handles_shared_constants_kept_outputs_schema_floats_and_clipping(tmp_path):
    model = _synthetic()
    onnx.save(model, str(tmp_path / "f32.onnx"))
    report = mixed_precision(model)
    onnx.save(model, str(tmp_path / "mixed.onnx"))
    mixed, types = _strict_types(tmp_path / "mixed.onnx")
    assert report.fp32_nodes == 2 and report.clipped == 2  # LayerNorm + Softmax; 1e6 and -1e6
    inits = {t.name: t for t in mixed.graph.initializer}
    assert inits["c"].data_type == F32 and inits["c__fp16"].data_type == F16  # LN scale float32, Mul's copy fp16
    assert onnx.numpy_helper.to_array(inits["big"]).tolist()[:2] == [FP16_MAX, -FP16_MAX]
    assert types["y"] == F16 and types["z"] == F16  # outputs fp16, names kept (y comes through a Cast)
    resize = next(n for n in mixed.graph.node if n.op_type == "Resize")
    assert types[resize.input[2]] == F32
    cast = next(n for n in mixed.graph.node if n.op_type == "Cast" and n.input[0] == "shape")
    assert cast.attribute[0].i == F16
    so = ort.SessionOptions()
    so.log_severity_level = 3
    x = np.array([[[[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]]], np.float32)
    ref = ort.InferenceSession(str(tmp_path / "f32.onnx"), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(tmp_path / "mixed.onnx"), so, providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float16)})
    np.testing.assert_allclose(got[0].astype(np.float32), ref[0], rtol=1e-2, atol=1e-3)


def test_timestep_region_is_what_depends_only_on_the_timestep():
    model = _synthetic()
    types = elem_types(model)
    # Everything computed from x; constants and shape arithmetic (Cast of a Shape, its sum) carry no values,
    # so they neither join the region (nodes 0, 7, 8, 10) nor keep Mul(b, n) (node 9) out of it.
    assert fp32_nodes(model.graph, types, keep_ops=(), fp32_inputs=("x",)) == set(range(12)) - {0, 7, 8, 10}
    assert fp32_nodes(model.graph, types, fp32_inputs=()) == {3, 4}  # only LayerNorm and Softmax


def test_subgraphs_are_refused():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F32, [1])])
    node = helper.make_node("If", ["cond"], ["o"], then_branch=then, else_branch=then)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", F32, [1])],
                              [helper.make_tensor_value_info("o", F32, [1])])
    with pytest.raises(ValueError, match="subgraphs"):
        mixed_precision(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_large_models_are_written_with_external_data(graphs, tmp_path, monkeypatch):
    from dreamwire.backends import onnx_precision

    monkeypatch.setattr(onnx_precision, "_EXTERNAL_DATA_BYTES", 0)  # as for a 3.4 GB float32 SD UNet
    dst = tmp_path / "model.onnx"
    convert_file(graphs["decoder"][0], dst)
    assert (tmp_path / "model.onnx.data").stat().st_size > dst.stat().st_size
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert session.run(None, _feeds(session, "decoder", True))[0].shape == (2, 3, 128, 128)
