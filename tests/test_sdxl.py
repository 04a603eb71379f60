"""SDXL in the stream engine: loading, diffusers-equal prompt encoding, and the engine against references.

Everything runs on the built-in tiny SDXL model (random weights, saved as a diffusers folder and loaded
through ``from_pretrained``). References call the tiny UNet directly with ``added_cond_kwargs``, step by
step, as diffusers' SDXL img2img pipeline does.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dreamwire.control.params import Params
from dreamwire.engine.schedule import add_noise, lcm_denoise
from tests.conftest import XL_SIZE as SIZE
from tests.conftest import frames

T_INDEX = {1: (35,), 2: (32, 45), 4: (18, 26, 35, 45)}


@pytest.fixture
def xl_engine(xl_parts, xl_backend, xl_prompts):
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    def make(params: dict, **config):
        config.setdefault("guidance", "none")
        return StreamEngine(xl_backend, xl_prompts, xl_parts.spec, EngineConfig(width=SIZE, height=SIZE, **config),
                            Params(params))

    return make


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)


# --- loading -----------------------------------------------------------------------------------


def test_family_is_read_from_the_config_not_the_name(xl_dir, tiny_dir, tmp_path):
    from dreamwire.models.load import load_model

    renamed = shutil.copytree(xl_dir, tmp_path / "stable-diffusion-v1-5")  # a misleading name
    parts = load_model(str(renamed))
    assert (parts.spec.family, parts.spec.kind) == ("sdxl", "turbo")  # sdxl-turbo's Euler/trailing scheduler
    assert parts.spec.pooled_dim == parts.text_encoder_2.config.projection_dim
    assert parts.spec.text_dim == parts.text_encoder.config.hidden_size + parts.text_encoder_2.config.hidden_size
    assert type(parts.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    sd = shutil.copytree(tiny_dir, tmp_path / "sdxl-turbo")
    sd_parts = load_model(str(sd))
    assert sd_parts.spec.family == "sd" and sd_parts.text_encoder_2 is None


def test_sdxl_pipeline_without_text_time_unet_is_one_clear_error(xl_dir, tiny_dir, tmp_path):
    """model_index.json says SDXL but the UNet is SD's: refused with one line, not a deep traceback."""
    from dreamwire.models.load import load_model
    from dreamwire.models.parts import ModelLoadError

    bad = shutil.copytree(xl_dir, tmp_path / "mixed")
    shutil.rmtree(bad / "unet")
    shutil.copytree(tiny_dir / "unet", bad / "unet")
    with pytest.raises(ModelLoadError) as err:
        load_model(str(bad))
    assert "text_time" in str(err.value) and "\n" not in str(err.value)


def test_missing_second_text_encoder_is_one_clear_error(xl_dir, tmp_path):
    from dreamwire.models.load import load_model
    from dreamwire.models.parts import ModelLoadError

    bad = shutil.copytree(xl_dir, tmp_path / "no-te2")
    shutil.rmtree(bad / "text_encoder_2")
    with pytest.raises(ModelLoadError) as err:
        load_model(str(bad))
    assert "could not load model" in str(err.value) and "\n" not in str(err.value)


def test_sdxl_defaults_to_taesdxl_unless_told(xl_dir, tmp_path, monkeypatch):
    """A pipeline shipping a full VAE gets madebyollin/taesdxl by default; --taesd none keeps its own."""
    import diffusers

    from dreamwire.models.load import DEFAULT_TAESDXL, load_model

    folder = shutil.copytree(xl_dir, tmp_path / "full-vae")
    index = json.loads((folder / "model_index.json").read_text())
    index["vae"] = ["diffusers", "AutoencoderKL"]
    (folder / "model_index.json").write_text(json.dumps(index))
    asked: list[str] = []
    real = diffusers.AutoencoderTiny.from_pretrained

    def fake(source, **kwargs):  # stand-in for the hub: serve the tiny TAESD-style VAE, record what was asked
        asked.append(str(source))
        return real(str(xl_dir / "vae"), **kwargs)

    monkeypatch.setattr(diffusers.AutoencoderTiny, "from_pretrained", fake)
    parts = load_model(str(folder))
    assert asked == [DEFAULT_TAESDXL] and parts.taesd == DEFAULT_TAESDXL
    own = real(str(xl_dir / "vae"))
    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", lambda *a, **k: own)
    kept = load_model(str(folder), taesd="none")
    assert kept.vae is own and kept.taesd is None
    assert asked == [DEFAULT_TAESDXL]


# --- prompt encoding ---------------------------------------------------------------------------


@torch.inference_mode()
def test_prompt_encoding_equals_diffusers_encode_prompt(xl_parts, xl_prompts):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    p = xl_parts
    pipe = StableDiffusionXLPipeline(
        vae=None, text_encoder=p.text_encoder, text_encoder_2=p.text_encoder_2, tokenizer=p.tokenizer,
        tokenizer_2=p.tokenizer_2, unet=p.unet, scheduler=EulerAncestralDiscreteScheduler(), add_watermarker=False)
    emb, neg, pooled, neg_pooled = pipe.encode_prompt(
        "a neon city at night", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
        negative_prompt="blurry")
    ids = pipe._get_add_time_ids((SIZE, SIZE), (0, 0), (SIZE, SIZE), dtype=torch.float32,
                                 text_encoder_projection_dim=p.text_encoder_2.config.projection_dim)
    for text, hidden, text_embeds in (("a neon city at night", emb, pooled), ("blurry", neg, neg_pooled)):
        ours = xl_prompts.encode(text)
        torch.testing.assert_close(ours.hidden, hidden, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours.added["text_embeds"], text_embeds, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours.added["time_ids"], ids, rtol=0, atol=0)


def test_prompt_blend_blends_every_tensor(xl_prompts):
    a, b = xl_prompts.encode("red fox"), xl_prompts.encode("blue whale")
    assert not torch.allclose(a.added["text_embeds"], b.added["text_embeds"])  # otherwise the check is empty
    mix = xl_prompts.encode_blend([("red fox", 1.0), ("blue whale", 3.0)])
    close(mix.hidden, 0.25 * a.hidden + 0.75 * b.hidden)
    close(mix.added["text_embeds"], 0.25 * a.added["text_embeds"] + 0.75 * b.added["text_embeds"])
    torch.testing.assert_close(mix.added["time_ids"], a.added["time_ids"])  # same size: blend changes nothing
    assert mix.added["time_ids"].tolist() == [[SIZE, SIZE, 0, 0, SIZE, SIZE]]


# --- the engine --------------------------------------------------------------------------------


def reference(engine, images_in: torch.Tensor, prompt=None, scale: float | None = None) -> torch.Tensor:
    """One batch of frames denoised step by step by the UNet itself with ``added_cond_kwargs``.

    ``scale``: full CFG as two separate UNet calls (negative, then prompt) and the textbook formula.
    """
    c, be = engine.consts, engine.backend
    unet = be.parts.unet
    f = images_in.shape[0]
    cond = prompt or engine.embeddings.cond
    neg = engine.embeddings.negative

    def eps(x, t, emb):
        added = {k: v.expand(f, *v.shape[1:]) for k, v in emb.added.items()}
        return unet(x, t, emb.hidden.expand(f, -1, -1), added_cond_kwargs=added, return_dict=False)[0]

    den = be.encode(images_in)
    for i in range(c.steps):
        rows = c.slot(i)
        x = add_noise(den, engine.noise[rows], c.a[rows], c.b[rows])
        t = c.timesteps[rows]
        out = eps(x, t, cond)
        if scale is not None:
            uncond = eps(x, t, neg)
            out = uncond + scale * (out - uncond)
        den = lcm_denoise(x, out, c.a[rows], c.b[rows], c.c_skip[rows], c.c_out[rows], "epsilon")
    return be.decode(den)


@pytest.mark.parametrize("n", [1, 2, 4])
@torch.inference_mode()
def test_stream_batch_equals_sequential_reference(xl_engine, n):
    e = xl_engine({"t_index_list": T_INDEX[n], "prompt": "a neon city"})
    inputs = frames(n + 2, size=SIZE, seed=40 + n)
    refs = [reference(e, im) for im in inputs]
    for k, im in enumerate(inputs):
        close(e.step(im).images, refs[max(0, k - (n - 1))])


@torch.inference_mode()
def test_two_frames_per_call_equal_reference(xl_engine):
    e = xl_engine({"t_index_list": T_INDEX[2], "prompt": "a neon city"}, frames=2)
    inputs = frames(4, f=2, size=SIZE, seed=5)
    refs = [reference(e, im) for im in inputs]
    for k, im in enumerate(inputs):
        close(e.step(im).images, refs[max(0, k - 1)])


@torch.inference_mode()
def test_full_cfg_equals_two_separate_unet_calls(xl_engine):
    p = {"t_index_list": T_INDEX[2], "prompt": "a neon city", "negative_prompt": "fog", "guidance_scale": 3.0}
    e = xl_engine(p, guidance="full")
    inputs = frames(4, size=SIZE, seed=9)
    refs = [reference(e, im, scale=3.0) for im in inputs]
    plain = [reference(e, im) for im in inputs]
    for k, im in enumerate(inputs):
        out = e.step(im).images
        close(out, refs[max(0, k - 1)])
        assert not torch.allclose(out, plain[max(0, k - 1)], atol=1e-3)  # guidance did something


@pytest.mark.parametrize("guidance", ["self", "onetime"])
@torch.inference_mode()
def test_rcfg_stream_equals_sequential(xl_engine, guidance):
    p = {"t_index_list": T_INDEX[4], "guidance_scale": 2.5, "delta": 0.7, "prompt": "a neon city",
         "negative_prompt": "fog"}
    stream, seq = xl_engine(p, guidance=guidance), xl_engine(p, guidance=guidance, batching="sequential")
    none = xl_engine(p, guidance="none", batching="sequential")
    inputs = frames(6, size=SIZE, seed=13)
    refs = [seq.step(im).images for im in inputs]
    unguided = [none.step(im).images for im in inputs]
    for k, im in enumerate(inputs):
        out = stream.step(im).images
        close(out, refs[max(0, k - 3)])
    assert not torch.allclose(refs[-1], unguided[-1], atol=1e-3)


@torch.inference_mode()
def test_prompt_change_shows_in_the_next_output(xl_engine, xl_prompts):
    e = xl_engine({"t_index_list": T_INDEX[1], "prompt": "a neon city"})
    a, b = frames(2, size=SIZE, seed=21)
    e.step(a)
    before = reference(e, b)
    e.update(Params({"t_index_list": T_INDEX[1], "prompt": "a quiet forest"}))
    out = e.step(b).images
    close(out, reference(e, b, prompt=xl_prompts.encode("a quiet forest")))
    assert not torch.allclose(out, before, atol=1e-3)


@torch.inference_mode()
def test_time_ids_reach_the_unet(xl_backend, xl_prompts):
    """The added conditioning is not dropped on the way: other time_ids, other output; none at all, refused."""
    from dreamwire.engine.conditioning import Conditioning

    cond = xl_prompts.encode("a neon city")
    x = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500.0])
    hidden = cond.hidden.expand(2, -1, -1)
    out = xl_backend.unet(x, t, hidden, added=cond.rows(2).added)
    bigger = Conditioning(cond.hidden, {**cond.added, "time_ids": cond.added["time_ids"] * 8})
    assert not torch.allclose(out, xl_backend.unet(x, t, hidden, added=bigger.rows(2).added), atol=1e-4)
    with pytest.raises(ValueError, match="added conditioning"):
        xl_backend.unet(x, t, hidden)


# --- random-weight benchmark architectures -----------------------------------------------------


def test_shipped_sdxl_turbo_config_is_sdxl_shaped():
    """SDXL's known widths: two encoders of 768 + 1280 for cross-attention, a 1280-wide pooled projection."""
    from dreamwire.bench.options import ARCHS
    from dreamwire.bench.random_models import _pooled_dim, sdxl_turbo_config

    cfg = sdxl_turbo_config()
    assert "sdxl-turbo" in ARCHS
    assert cfg["cross_attention_dim"] == 768 + 1280 and _pooled_dim(cfg) == 1280
    assert cfg["addition_embed_type"] == "text_time" and len(cfg["block_out_channels"]) == 3


@torch.inference_mode()
def test_random_tiny_sdxl_runs_the_engine_with_added_conditioning():
    from dreamwire.backends.torch_eager import TorchBackend
    from dreamwire.bench.random_models import RandomPrompts, random_parts
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    parts = random_parts(torch.device("cpu"), torch.float32, arch="tiny-sdxl")
    assert parts.spec.family == "sdxl"
    prompts = RandomPrompts(parts.spec, torch.device("cpu"), torch.float32, size=(SIZE, SIZE))
    cond = prompts.encode("x")
    assert cond.added["text_embeds"].shape == (1, parts.spec.pooled_dim)
    assert cond.added["time_ids"].tolist() == [[SIZE, SIZE, 0, 0, SIZE, SIZE]]
    e = StreamEngine(TorchBackend(parts), prompts, parts.spec, EngineConfig(width=SIZE, height=SIZE),
                     Params({"t_index_list": T_INDEX[2]}))
    out = e.step(frames(1, size=SIZE)[0]).images
    assert out.shape == (1, 3, SIZE, SIZE) and torch.isfinite(out).all()


@pytest.mark.slow
def test_run_tiny_sdxl_live_loop_offline(tmp_path):
    """Acceptance: `dreamwire run --model tiny-sdxl` runs the live loop offline and writes its frames."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "dreamwire", "run", "--model", "tiny-sdxl", "--source", "pattern", "--sink",
         f"images:{out}", "--frames", "3", "--osc-port", "0", "--telemetry", "off"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(out.glob("frame_*.png"))) == 3
