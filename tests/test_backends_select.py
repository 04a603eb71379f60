"""``--backend`` names: the auto order, clear errors for backends that cannot run, no silent fallback."""

from __future__ import annotations

import pytest
import torch

from dreamwire.backends import select
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.backend import Backend
from tests.conftest import fail_import


@pytest.mark.parametrize(
    "device,trt,ort,expected",
    [
        ("cuda", True, True, "tensorrt"),
        ("cuda", False, True, "compile"),
        ("cpu", True, True, "onnxruntime"),  # TensorRT is never picked without a GPU
        ("cpu", False, False, "torch"),
    ],
)
def test_auto_order(monkeypatch, device, trt, ort, expected):
    monkeypatch.setattr(select, "tensorrt_importable", lambda: trt)
    monkeypatch.setattr(select, "onnxruntime_installed", lambda: ort)
    assert select.default_backend(device) == expected


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
def test_compile_backend_smoke_matches_torch(tiny_parts, torch_backend):
    """One shape, the decoder only: ~20 s of inductor compile on two CPU cores."""
    be = select.make_backend("compile", tiny_parts)
    assert be.name == "compile" and not be.cuda_graphs
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(be.decode(z), torch_backend.decode(z), rtol=1e-4, atol=1e-5)


def test_auto_skips_exported_graphs_for_sizes_off_their_grid(tiny_parts, monkeypatch, caplog):
    from dreamwire.engine.config import EngineConfig

    monkeypatch.setattr(select, "onnxruntime_installed", lambda: True)
    be = select.make_backend("auto", tiny_parts, config=EngineConfig(width=264, height=256))
    assert be.name == "torch" and "multiple of 16" in caplog.text
