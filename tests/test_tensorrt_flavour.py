"""TensorRT's CUDA flavour must match torch's CUDA: checked before ``import tensorrt``, with the pip command.

The installed distributions and ``torch.version.cuda`` are faked; ``tensorrt`` is the stand-in of
tests/fakes/tensorrt.py, so nothing native is needed.
"""

from __future__ import annotations

import sys

import pytest
import torch

from dreamwire.backends import trt_build, trt_flavour
from dreamwire.backends.errors import BackendUnavailable
from tests.fakes import tensorrt as fake_trt

# What `pip install tensorrt` (11.4.0.106) leaves installed: the meta-package pulls the cu13 wheels.
META_CU13 = ["tensorrt", "tensorrt_cu13", "tensorrt_cu13_libs", "tensorrt_cu13_bindings", "torch", "numpy"]
CU12 = ["tensorrt-cu12", "tensorrt_cu12_libs", "tensorrt_cu12_bindings", "torch"]


def _installed(monkeypatch, names, torch_cuda):
    monkeypatch.setattr(trt_flavour, "installed_distributions", lambda: list(names))
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt.make("11.4.0.106"))


def test_cuda13_tensorrt_beside_a_cuda12_torch_is_refused_with_the_exact_command(monkeypatch):
    _installed(monkeypatch, META_CU13, "12.8")
    with pytest.raises(BackendUnavailable) as err:
        trt_build.import_tensorrt()
    msg = str(err.value)
    assert "installed for CUDA 13 but torch is built for CUDA 12.8" in msg and "\n" not in msg
    assert msg.endswith("Fix: pip uninstall -y tensorrt_cu13 tensorrt_cu13_bindings tensorrt_cu13_libs && "
                        "pip install 'dreamwire[tensorrt-cu12]'")


def test_matching_flavour_imports(monkeypatch):
    _installed(monkeypatch, CU12, "12.4")
    assert trt_build.import_tensorrt().__version__ == "11.4.0.106"
    _installed(monkeypatch, META_CU13, "13.0")
    assert trt_build.import_tensorrt().__version__ == "11.4.0.106"


def test_both_flavours_installed_is_refused(monkeypatch):
    _installed(monkeypatch, CU12 + META_CU13, "12.6")
    with pytest.raises(BackendUnavailable, match=r"CUDA 12 and 13 at once.*pip uninstall -y tensorrt_cu13 "):
        trt_build.import_tensorrt()


def test_nothing_to_compare_is_left_to_the_import(monkeypatch):
    _installed(monkeypatch, ["torch"], "12.1")  # a TensorRT from NVIDIA's tar: no wheel names
    assert trt_build.import_tensorrt() is sys.modules["tensorrt"]
    assert trt_flavour.mismatch(None, META_CU13) is None  # a CPU torch: the device check speaks instead


def test_missing_tensorrt_names_the_extra_for_torchs_cuda(monkeypatch):
    from tests.conftest import fail_import

    monkeypatch.setattr(trt_flavour, "installed_distributions", lambda: ["torch"])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    fail_import(monkeypatch, "tensorrt", ModuleNotFoundError("No module named 'tensorrt'"))
    with pytest.raises(BackendUnavailable, match=r"pip install 'dreamwire\[tensorrt-cu13\]'"):
        trt_build.import_tensorrt()
