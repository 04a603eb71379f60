"""``--backend`` names: the auto order, clear errors for backends that cannot run, no silent fallback."""

from __future__ import annotations

import pytest
import torch

from dreamwire.backends import select
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.api import Backend
from tests.conftest import fail_import


@pytest.mark.parametrize(
    "device,trt,triton,ort,expected",
    [
        ("cuda", True, False, True, "tensorrt"),
        ("cuda", False, True, True, "compile"),
        ("cuda", False, False, True, "torch+graphs"),  # Windows: no Triton, so no Inductor on CUDA
        ("cpu", True, True, True, "onnxruntime"),  # TensorRT is never picked without a GPU
        ("cpu", False, False, False, "torch"),
    ],
)
def test_auto_order(monkeypatch, device, trt, triton, ort, expected):
    monkeypatch.setattr(select, "tensorrt_importable", lambda: trt)
    monkeypatch.setattr(select, "triton_missing", lambda: None if triton else "ModuleNotFoundError: triton")
    monkeypatch.setattr(select, "onnxruntime_installed", lambda: ort)
    assert select.default_backend(device) == expected


def _on_cuda(parts):
    """The parts as a CUDA model looks to backend choice and construction (nothing runs on a GPU here)."""
    import dataclasses
    from types import SimpleNamespace

    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, config=parts.unet.config)
    return dataclasses.replace(parts, unet=unet)


def test_auto_on_cuda_without_triton_picks_eager_cuda_graphs_and_says_why(tiny_parts, monkeypatch, caplog):
    fail_import(monkeypatch, "tensorrt", ModuleNotFoundError("No module named 'tensorrt'"))
    fail_import(monkeypatch, "triton", ModuleNotFoundError("No module named 'triton'"))
    be = select.make_backend("auto", _on_cuda(tiny_parts))
    assert isinstance(be, Backend) and be.name == "torch+graphs" and be.cuda_graphs
    assert be.captures == 0  # nothing captured until the first call (or the warm-up) of a shape
    assert "Triton cannot be imported" in caplog.text and "torch+graphs" in caplog.text
    from dreamwire.backends.cudagraph import CudaGraphRunner

    runners = list(be._fns.values())
    assert all(isinstance(r, CudaGraphRunner) for r in runners) and len({id(r.pool) for r in runners}) == 1


def test_auto_on_cuda_with_triton_picks_compile(tiny_parts, monkeypatch):
    fail_import(monkeypatch, "tensorrt", ModuleNotFoundError("No module named 'tensorrt'"))
    monkeypatch.setattr(select, "triton_missing", lambda: None)  # as where Triton imports (Linux + CUDA)
    be = select.make_backend("auto", _on_cuda(tiny_parts))
    assert be.name == "compile" and be.cuda_graphs and be.captures == 0


def test_auto_off_grid_size_on_cuda_without_triton_is_not_compile(tiny_parts, monkeypatch):
    from dreamwire.engine.api import EngineConfig

    monkeypatch.setattr(select, "tensorrt_importable", lambda: True)
    fail_import(monkeypatch, "triton", ModuleNotFoundError("No module named 'triton'"))
    be = select.make_backend("auto", _on_cuda(tiny_parts), config=EngineConfig(width=264, height=256))
    assert be.name == "torch+graphs"


def test_torch_graphs_by_name_needs_cuda(tiny_parts):
    with pytest.raises(BackendUnavailable, match="needs --device cuda"):
        select.make_backend("torch+graphs", tiny_parts)


def test_every_backend_counts_captures(tiny_parts, torch_backend):
    assert torch_backend.captures == 0  # eager: neither compiles nor captures
    assert select.make_backend("compile", tiny_parts).captures == 0  # nothing compiled before the first call


def test_auto_on_this_cpu_machine_is_onnxruntime_when_installed():
    pytest.importorskip("onnxruntime")
    assert select.default_backend("cpu") == "onnxruntime"


def test_unknown_backend_lists_the_names(tiny_parts):
    with pytest.raises(ValueError, match="auto, torch, compile, onnxruntime, tensorrt"):
        select.make_backend("tvm", tiny_parts)


def test_torch_backend_by_name(tiny_parts):
    be = select.make_backend("torch", tiny_parts)
    assert isinstance(be, Backend) and be.name == "torch"


def test_onnxruntime_requested_but_missing_names_the_extra(tiny_parts, monkeypatch):
    fail_import(monkeypatch, "onnxruntime", ModuleNotFoundError("No module named 'onnxruntime'"))
    with pytest.raises(BackendUnavailable, match=r"pip install 'dreamwire\[onnx\]'"):
        select.make_backend("onnxruntime", tiny_parts)


def test_tensorrt_on_cpu_model_is_an_error_not_a_fallback(tiny_parts):
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        select.make_backend("tensorrt", tiny_parts)


def test_compile_with_cuda_graphs_needs_cuda(tiny_parts):
    with pytest.raises(ValueError, match="CUDA"):
        select.make_backend("compile", tiny_parts, cuda_graphs=True)


@pytest.mark.slow
def test_compile_backend_one_dynamic_batch_compile_serves_every_batch(tiny_parts, torch_backend):
    """The decoder at batch 2, 3 and 4: one dynamic-batch Inductor compile serves them all.

    ~30 s of Inductor on two CPU cores. With static shapes this was one compile per batch, which made
    warming every step count 1..8 before a show cost minutes per network (batch 1 is dynamo's own
    specialisation: one more compile, so two per network in all).
    """
    be = select.make_backend("compile", tiny_parts)
    assert be.name == "compile" and not be.cuda_graphs
    g = torch.Generator().manual_seed(0)
    for batch in (2, 3, 4):
        z = torch.randn(batch, 4, 16, 16, generator=g)
        torch.testing.assert_close(be.decode(z), torch_backend.decode(z), rtol=1e-4, atol=1e-5)
    assert be.compiles == 1 and be.captures == 1  # no graphs on CPU: captures = compiles


def test_auto_skips_exported_graphs_for_sizes_off_their_grid(tiny_parts, monkeypatch, caplog):
    from dreamwire.engine.api import EngineConfig

    monkeypatch.setattr(select, "onnxruntime_installed", lambda: True)
    be = select.make_backend("auto", tiny_parts, config=EngineConfig(width=264, height=256))
    assert be.name == "torch" and "multiple of 16" in caplog.text
