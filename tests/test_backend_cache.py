"""Engine/ONNX cache: every key component matters, and damaged entries are rebuilt (acceptance 2)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from dreamwire.backends.cache import MANIFEST, CacheKey, check_entry, engines_dir, ensure_entry, folder_fingerprint
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import engine_key

BASE = CacheKey(component="unet", model_id="org/model", model_hash="abc", loras=(("lcm-lora", 1.0),),
                dtype="float16@cuda", exporter="torchscript", opset=17, fmt="trt",
                resolution=ResolutionProfile().label(), batch=BatchProfile().label(), guidance="self",
                trt_version="10.3.0", gpu="NVIDIA H100|sm90", options=(("fp16", "True"),))

CHANGES = {
    "component": "decoder",
    "model_id": "org/other",
    "model_hash": "abd",
    "loras": (("lcm-lora", 0.5),),
    "dtype": "float32@cuda",
    "exporter": "dynamo",
    "opset": 18,
    "fmt": "onnx",
    "resolution": ResolutionProfile(minimum=256, maximum=768).label(),
    "batch": BatchProfile(frames=2).label(),
    "guidance": "full",
    "trt_version": "10.4.0",
    "gpu": "NVIDIA GeForce RTX 4090|sm89",
    "options": (("fp16", "False"),),
    "version": 999,
}


def test_every_key_field_is_covered_by_a_change():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(CacheKey)}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_any_key_component_gives_a_different_entry(field):
    changed = dataclasses.replace(BASE, **{field: CHANGES[field]})
    assert changed.digest() != BASE.digest()
    assert changed.dirname() != BASE.dirname()


def test_key_is_stable_and_lora_list_order_and_scale_matter():
    assert dataclasses.replace(BASE).digest() == BASE.digest()
    two = dataclasses.replace(BASE, loras=(("a", 1.0), ("b", 0.5)))
    assert two.digest() != dataclasses.replace(BASE, loras=(("b", 0.5), ("a", 1.0))).digest()
    assert two.digest() != dataclasses.replace(BASE, loras=(("a", 1.0), ("b", 0.6))).digest()


def test_engine_key_follows_profile_batch_guidance_trt_and_gpu():
    onnx = dataclasses.replace(BASE, fmt="onnx", resolution="", batch="", guidance="", trt_version="", gpu="",
                               options=())
    res, batch = ResolutionProfile(), BatchProfile(frames=1, guidance="self", steps=2)
    k = engine_key(onnx, res, batch, trt_version="10.3", gpu="A|sm86")
    variants = [
        engine_key(onnx, ResolutionProfile(minimum=512), batch, trt_version="10.3", gpu="A|sm86"),
        engine_key(onnx, ResolutionProfile(opt=768), batch, trt_version="10.3", gpu="A|sm86"),
        engine_key(onnx, res, BatchProfile(frames=2), trt_version="10.3", gpu="A|sm86"),
        engine_key(onnx, res, BatchProfile(guidance="full"), trt_version="10.3", gpu="A|sm86"),
        engine_key(onnx, res, BatchProfile(max_steps=4), trt_version="10.3", gpu="A|sm86"),
        engine_key(onnx, res, batch, trt_version="10.4", gpu="A|sm86"),
        engine_key(onnx, res, batch, trt_version="10.3", gpu="A|sm89"),
        engine_key(onnx, res, batch, trt_version="10.3", gpu="A|sm86", fp16=False),
        engine_key(dataclasses.replace(onnx, model_hash="zzz"), res, batch, trt_version="10.3", gpu="A|sm86"),
    ]
    digests = {k.digest(), *(v.digest() for v in variants)}
    assert len(digests) == len(variants) + 1
    assert k.fmt == "trt" and k.digest() != onnx.digest()


def test_onnx_key_follows_model_weights_lora_dtype_and_component(tiny_parts, tmp_path):
    import shutil

    from dreamwire.backends.export import onnx_key

    base = onnx_key(tiny_parts, "unet")
    assert onnx_key(tiny_parts, "unet") == base
    assert onnx_key(tiny_parts, "decoder").digest() != base.digest()
    assert onnx_key(tiny_parts, "unet", loras=(("x", 1.0),)).digest() != base.digest()
    fused = (("latent-consistency/lcm-lora-sdv1-5", 1.0), ("style.safetensors", 0.6))
    lora_parts = dataclasses.replace(tiny_parts, lcm_lora=fused[0][0], loras=fused)
    assert onnx_key(lora_parts, "unet").loras == fused
    assert onnx_key(lora_parts, "unet").digest() != base.digest()
    rescaled = dataclasses.replace(lora_parts, loras=(fused[0], ("style.safetensors", 0.8)))
    assert onnx_key(rescaled, "unet").digest() != onnx_key(lora_parts, "unet").digest()
    # A copy of the model folder with one weight file changed hashes differently.
    copy = tmp_path / "model"
    shutil.copytree(tiny_parts.source, copy)
    copied = dataclasses.replace(tiny_parts, source=str(copy))
    assert onnx_key(copied, "unet").model_hash == base.model_hash
    weights = next((copy / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert onnx_key(copied, "unet").model_hash != base.model_hash


def test_folder_fingerprint_sees_config_edits(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    first = folder_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert folder_fingerprint(tmp_path) != first


def _builder(calls: list[int], payload: bytes = b"x" * 4096):
    def build(folder: Path) -> None:
        calls.append(1)
        (folder / "model.onnx").write_bytes(payload)
        (folder / "weights.bin").write_bytes(payload[::-1] + b"tail")

    return build


def test_entry_is_built_once_then_reused(tmp_path):
    calls: list[int] = []
    key = dataclasses.replace(BASE, fmt="onnx")
    a = ensure_entry(key, _builder(calls), tmp_path)
    b = ensure_entry(key, _builder(calls), tmp_path)
    assert a == b and calls == [1]
    manifest = json.loads((a / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.onnx", "weights.bin"} and manifest["digest"] == key.digest()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete_file", "delete_manifest", "bad_manifest"])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage):
    calls: list[int] = []
    key = dataclasses.replace(BASE, fmt="onnx")
    folder = ensure_entry(key, _builder(calls), tmp_path)
    target = folder / "model.onnx"
    good = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(good[: len(good) // 2])
    elif damage == "flip_byte":  # same size, different content: only the sha256 can tell
        target.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
        os.utime(target, ns=(1, 1))
    elif damage == "delete_file":
        target.unlink()
    elif damage == "delete_manifest":  # what an interrupted rename-less build would leave
        (folder / MANIFEST).unlink()
    else:
        (folder / MANIFEST).write_text("{not json")
    assert check_entry(folder, key) is not None
    again = ensure_entry(key, _builder(calls), tmp_path)
    assert calls == [1, 1] and again == folder
    assert target.read_bytes() == good and check_entry(folder, key) is None


def test_truncated_onnx_export_is_rebuilt_and_runs(tiny_parts, tmp_path, monkeypatch):
    """End to end: truncate the real decoder graph in the cache; the backend re-exports it."""
    import torch

    from dreamwire.backends.export import cached_onnx
    from dreamwire.backends.onnxrt import OnnxRuntimeBackend

    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    path = cached_onnx(tiny_parts, "decoder", height=128, width=128)
    assert path.is_relative_to(engines_dir())
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size - 1000)
    again = cached_onnx(tiny_parts, "decoder", height=128, width=128)
    assert again == path and path.stat().st_size == size
    paths = {c: cached_onnx(tiny_parts, c, height=128, width=128) for c in ("unet", "encoder", "decoder")}
    be = OnnxRuntimeBackend(tiny_parts, width=128, height=128, paths=paths)
    assert be.decode(torch.zeros(1, 4, 16, 16)).shape == (1, 3, 128, 128)


def test_taesd_changes_the_vae_keys_only(tiny_parts):
    from dreamwire.backends.export import onnx_key

    with_taesd = dataclasses.replace(tiny_parts, taesd=str(Path(tiny_parts.source) / "vae"))
    assert onnx_key(with_taesd, "unet") == onnx_key(tiny_parts, "unet")
    for comp in ("encoder", "decoder"):
        assert onnx_key(with_taesd, comp).digest() != onnx_key(tiny_parts, comp).digest()
