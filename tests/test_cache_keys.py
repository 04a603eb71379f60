"""Cache-key inputs the key tests never varied (issue 10 test gaps): dtype/device, workspace, big weight files."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import torch

from dreamwire.backends import cache
from dreamwire.backends.export import onnx_key
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import engine_key


def test_onnx_key_follows_dtype_and_device(tiny_parts):
    base = onnx_key(tiny_parts, "unet")
    fp16 = onnx_key(tiny_parts, "unet", dtype=torch.float16)
    on_cuda = onnx_key(dataclasses.replace(tiny_parts, unet=SimpleNamespace(dtype=torch.float32,
                                                                             device=torch.device("cuda", 0))), "unet")
    assert len({base.digest(), fp16.digest(), on_cuda.digest()}) == 3
    assert (base.dtype, fp16.dtype, on_cuda.dtype) == ("float32@cpu", "float16@cpu", "float32@cuda")


def test_engine_key_follows_the_users_workspace_limit():
    onnx = cache.CacheKey(component="unet", model_id="m", model_hash="h")
    args = (onnx, ResolutionProfile(), BatchProfile())
    keys = {engine_key(*args, trt_version="10.3", gpu="g", workspace_gb=w).digest() for w in (None, 4.0, 8.0)}
    assert len(keys) == 3


def test_big_weight_files_are_fingerprinted_by_size_and_mtime_not_content(tmp_path, monkeypatch):
    """Above the content-hash limit a file is stat'ed (seconds saved per start); a replaced file still shows."""
    monkeypatch.setattr(cache, "_CONTENT_HASH_LIMIT", 1024)
    big = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    big.parent.mkdir()
    big.write_bytes(b"a" * 4096)
    (tmp_path / "unet" / "config.json").write_text("{}")
    os.utime(big, ns=(1_000_000_000, 1_000_000_000))
    first = cache.folder_fingerprint(tmp_path)
    big.write_bytes(b"b" * 4096)  # same size, new content, same mtime: not read, so the same fingerprint
    os.utime(big, ns=(1_000_000_000, 1_000_000_000))
    assert cache.folder_fingerprint(tmp_path) == first
    os.utime(big, ns=(2_000_000_000, 2_000_000_000))  # replaced (new mtime): a new fingerprint
    assert cache.folder_fingerprint(tmp_path) != first
    (tmp_path / "unet" / "config.json").write_text('{"x": 1}')  # configs are always read
    assert cache.folder_fingerprint(tmp_path) != first


def _with_controlnets(parts, *sources):
    return dataclasses.replace(parts, controlnets=tuple(object() for _ in sources), controlnet_sources=sources)


def test_controlnet_graph_keys_follow_the_controlnet_set(tiny_parts, tmp_path):
    """Another ControlNet (or the same folder re-saved with other weights) exports anew; the same one reuses."""
    from dreamwire.backends.export import control_components
    from dreamwire.models.controlnet import build_tiny_controlnet

    a, b = (str(build_tiny_controlnet(tmp_path / name, seed=s)) for name, s in (("a", 1), ("b", 2)))
    one, other, both = (_with_controlnets(tiny_parts, *s) for s in ((a,), (b,), (b, a)))
    assert onnx_key(one, "controlnet0").digest() != onnx_key(other, "controlnet0").digest()
    assert onnx_key(both, "controlnet1").digest() == onnx_key(one, "controlnet0").digest()  # position-free

    def key_set(parts):
        return {onnx_key(parts, c).digest() for c in control_components(parts)}

    assert key_set(one) != key_set(other) and key_set(one) < key_set(both)
    before = onnx_key(one, "controlnet0").digest()
    build_tiny_controlnet(tmp_path / "a", seed=3)  # same folder, new weights
    assert onnx_key(one, "controlnet0").digest() != before
    # The engine keys are built on the ONNX keys, so TensorRT engines follow too.
    eng = [engine_key(onnx_key(p, "controlnet0"), ResolutionProfile(), BatchProfile(), trt_version="10.3", gpu="g")
           for p in (one, other)]
    assert eng[0].digest() != eng[1].digest()


def test_residual_unet_has_its_own_key(tiny_parts, tmp_path):
    """The residual-input UNet is another graph than the plain UNet, keyed apart from it."""
    from dreamwire.models.controlnet import build_tiny_controlnet

    parts = _with_controlnets(tiny_parts, str(build_tiny_controlnet(tmp_path / "a", seed=1)))
    assert onnx_key(parts, "unet_residual").digest() != onnx_key(parts, "unet").digest()
