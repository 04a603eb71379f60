"""Model loading: the tiny model round-trips through from_pretrained offline; bad paths fail clearly."""

from __future__ import annotations

import pytest
import torch

from dreamwire.models.load import detect_kind, load_model
from dreamwire.models.parts import ModelLoadError
from dreamwire.models.tiny import _write_tiny_tokenizer, build_tiny_model, tiny_modules


def test_tiny_model_saved_and_loaded_back_identically(tmp_path, no_network):
    folder = build_tiny_model(tmp_path / "tiny", seed=3)
    vocab = _write_tiny_tokenizer(tmp_path / "tok")
    ref = tiny_modules(vocab, seed=3)
    parts = load_model(str(folder), device="cpu", dtype=torch.float32)
    assert parts.spec.kind == "lcm" and parts.spec.prediction_type == "epsilon" and parts.spec.vae_scale_factor == 8

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g)
    t = torch.tensor([359, 99])
    ids = parts.tokenizer(["a red fox", "the sea"], padding="max_length", max_length=77,
                          return_tensors="pt").input_ids
    with torch.inference_mode():
        emb = ref["text_encoder"](ids)[0]
        assert torch.equal(parts.text_encoder(ids)[0], emb)
        assert torch.equal(parts.unet(x, t, emb).sample, ref["unet"](x, t, emb).sample)
        img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        assert torch.equal(parts.vae.encode(img).latents, ref["vae"].encode(img).latents)
        assert torch.equal(parts.vae.decode(x[:1]).sample, ref["vae"].decode(x[:1]).sample)


def test_engine_output_identical_across_two_loads(tmp_path, no_network):
    from dreamwire.backends.assemble import build_engine
    from dreamwire.engine.api import EngineConfig

    folder = build_tiny_model(tmp_path / "tiny")
    cfg = EngineConfig(width=128, height=128)
    a = build_engine(str(folder), backend="torch", config=cfg, device="cpu")
    b = build_engine(str(folder), backend="torch", config=cfg, device="cpu")
    img = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.equal(a.step(img).images, b.step(img).images)


@pytest.mark.parametrize("path", ["/nonexistent/model/folder", "./no-such-dir", "a/b/c"])
def test_bad_model_path_gives_one_clear_line(path, no_network):
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert path in msg and "--model tiny" in msg and "local diffusers folder" in msg


def test_broken_model_folder_is_a_clear_error(tmp_path, no_network):
    folder = build_tiny_model(tmp_path / "tiny")
    (folder / "unet" / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="--model tiny"):
        load_model(str(folder))


@pytest.mark.parametrize(("config", "kind"), [
    ({"_class_name": "LCMScheduler"}, "lcm"),
    ({"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}, "turbo"),
    ({"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading"}, "sd"),
    ({"_class_name": "PNDMScheduler"}, "sd"),
])
def test_kind_comes_from_scheduler_config(config, kind):
    assert detect_kind(config) == kind


def test_v_prediction_is_read_from_config(tmp_path, no_network):
    import json

    folder = build_tiny_model(tmp_path / "tiny")
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_path.write_text(json.dumps(cfg))
    assert load_model(str(folder)).spec.prediction_type == "v_prediction"


def test_taesd_replaces_vae(tmp_path, no_network):
    from diffusers import AutoencoderTiny

    taesd = tmp_path / "taesd"
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(taesd)
    parts = load_model("tiny", taesd=str(taesd))
    assert parts.vae.config.encoder_block_out_channels == [8, 8, 8, 8]
    assert parts.taesd == str(taesd)


def _plain_sd_folder(tmp_path):
    import json

    folder = build_tiny_model(tmp_path / "sd15")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1}))
    return folder


def _random_lora(folder, out):
    """A small random LoRA for the tiny UNet, saved the way diffusers saves LCM-LoRA."""
    peft = pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    layers = convert_state_dict_to_diffusers(peft.get_peft_model_state_dict(unet))
    g = torch.Generator().manual_seed(0)
    layers = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in layers.items()}
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, safe_serialization=True)
    return out


def test_lcm_lora_is_fused_into_plain_sd_only(tmp_path, no_network):
    folder = _plain_sd_folder(tmp_path)
    lora = _random_lora(folder, tmp_path / "lora")
    plain = load_model(str(folder), lcm_lora=None)
    fused = load_model(str(folder), lcm_lora=str(lora))
    assert plain.spec.kind == fused.spec.kind == "sd" and fused.lcm_lora == str(lora) and plain.lcm_lora is None
    names = [n for n, _ in fused.unet.named_parameters()]
    assert not any("lora" in n for n in names)  # fused and unloaded: plain weights, no adapter layers
    diff = max((a - b).abs().max().item() for a, b in zip(plain.unet.parameters(), fused.unet.parameters()))
    assert diff > 1e-3
    # An LCM model never gets LCM-LoRA, whatever is passed.
    lcm = load_model("tiny", lcm_lora=str(lora))
    assert lcm.spec.kind == "lcm" and lcm.lcm_lora is None


def test_missing_lcm_lora_is_a_clear_error(tmp_path, no_network):
    pytest.importorskip("peft")
    folder = _plain_sd_folder(tmp_path)
    with pytest.raises(ModelLoadError, match="LCM-LoRA"):
        load_model(str(folder), lcm_lora=str(tmp_path / "no-such-lora"))


def test_style_loras_fuse_at_their_scale_into_any_kind(tmp_path, no_network):
    """A user LoRA goes into LCM/turbo models too (unlike the original), scaled: half scale = half the delta."""
    from dreamwire.models.sources import parse_lora

    lora = _random_lora(_plain_sd_folder(tmp_path), tmp_path / "style")
    plain = load_model("tiny", lcm_lora=None)
    half = load_model("tiny", loras=[parse_lora(f"{lora}:0.5")])
    full = load_model("tiny", loras=[(str(lora), 1.0)])
    assert half.spec.kind == "lcm" and half.loras == ((str(lora), 0.5),) and half.lcm_lora is None
    deltas = [(h - p, f - p) for p, h, f in zip(plain.unet.parameters(), half.unet.parameters(),
                                                   full.unet.parameters())]
    assert max(d_full.abs().max().item() for _, d_full in deltas) > 1e-3
    for d_half, d_full in deltas:
        torch.testing.assert_close(d_half, 0.5 * d_full, rtol=1e-3, atol=1e-6)


def test_lora_scale_parsing():
    from dreamwire.models.sources import parse_lora

    assert parse_lora("owner/style:0.7") == ("owner/style", 0.7)
    assert parse_lora("/loras/x.safetensors") == ("/loras/x.safetensors", 1.0)
    assert parse_lora("C:\\loras\\x.safetensors:0.5") == ("C:\\loras\\x.safetensors", 0.5)
    assert parse_lora("C:\\loras\\x.safetensors") == ("C:\\loras\\x.safetensors", 1.0)


def test_offline_hub_id_not_in_cache_is_one_line_saying_how_to_get_it(tmp_path):
    """Through the CLI, offline with an empty cache: one line naming the cache and the download command, exit 2."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--model", "someone/not-cached", "--frames", "1",
                        "--sink", "null"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "warn" in ln.lower()]
    assert len(errors) == 1, r.stderr  # no hub warning or traceback line before it
    line = errors[0]
    assert "not in the local Hugging Face cache" in line and str(tmp_path / "hf") in line
    assert "hf download someone/not-cached" in line and "HF_HOME" in line
    assert "model_index.json" not in r.stderr


def test_unreachable_hub_with_an_uncached_id_says_so_not_model_index_json(monkeypatch, tmp_path):
    """Without HF_HUB_OFFLINE but no network, the hub library gives up with LocalEntryNotFoundError and
    diffusers rewords it as "does not appear to have a file named model_index.json": name the real cause."""
    import diffusers
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args, **kwargs):
        try:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        except LocalEntryNotFoundError as exc:
            raise OSError("someone/not-cached does not appear to have a file named model_index.json.") from exc

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(diffusers.DiffusionPipeline, "load_config", unreachable)
    with pytest.raises(ModelLoadError) as info:
        load_model("someone/not-cached")
    msg = str(info.value)
    assert "\n" not in msg and "not in the local Hugging Face cache" in msg
    assert "hf download someone/not-cached" in msg and "model_index.json" not in msg
