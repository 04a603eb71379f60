"""The built-in ``tiny-sdxl`` model: an SDXL-shaped pipeline with random weights, built in code.

Like ``tiny`` it exists so SDXL's whole path (two text encoders, pooled
embedding, ``time_ids``, the ``text_time`` UNet) runs offline and in CI
through the same ``from_pretrained`` code that loads ``stabilityai/sdxl-turbo``.
The two encoders deliberately have different widths, so a test catches
concatenating them in the wrong order or pooling from the wrong one. The
scheduler is sdxl-turbo's (Euler ancestral, trailing spacing), so the kind is
detected as "turbo" from the config, as for the real model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dreamwire.models.store import cache_root, ensure_entry
from dreamwire.models.tiny import _write_tiny_tokenizer

TINY_SDXL = "tiny-sdxl"
TINY_SDXL_VERSION = "v1"
HIDDEN_1, HIDDEN_2, POOLED = 32, 40, 24  # text_encoder / text_encoder_2 widths, text_encoder_2 projection
TIME_EMBED = 8  # addition_time_embed_dim: each of the 6 time ids gets an 8-wide sinusoidal embedding


def _clip_config(vocab_size: int, hidden: int, projection: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=projection, hidden_act="gelu",
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def tiny_sdxl_modules(vocab_size: int, seed: int = 0) -> dict[str, Any]:
    """Random-weight SDXL UNet, both CLIP encoders and a tiny AutoencoderTiny, deterministic in ``seed``.

    Sizes follow diffusers' SDXL pipeline tests: cross-attention width is the two encoders' hidden sizes
    summed, and the added-embedding input is 6 time embeddings plus the pooled projection.
    """
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, transformer_layers_per_block=(1, 2), norm_num_groups=8,
            addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
            projection_class_embeddings_input_dim=6 * TIME_EMBED + POOLED,
            cross_attention_dim=HIDDEN_1 + HIDDEN_2,
        )
        text_encoder = CLIPTextModel(_clip_config(vocab_size, HIDDEN_1, HIDDEN_1))
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(vocab_size, HIDDEN_2, POOLED))
        vae = AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16), decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
        )
    return {"unet": unet, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2, "vae": vae}


def _write_tokenizer_2(folder: Path) -> int:
    """SDXL's second tokenizer pads with "!" instead of the end token; mirror that."""
    size = _write_tiny_tokenizer(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["pad_token"] = "!"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    return size


def build_tiny_sdxl_model(folder: Path, seed: int = 0) -> Path:
    """Write the tiny SDXL pipeline (sdxl-turbo's scheduler, TAESDXL-style VAE) as a diffusers folder."""
    from diffusers import EulerAncestralDiscreteScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tiny_tokenizer(folder / "tokenizer")
    _write_tokenizer_2(folder / "tokenizer_2")
    for name, module in tiny_sdxl_modules(vocab_size, seed).items():
        module.save_pretrained(folder / name)
    EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="trailing",
    ).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.27.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderTiny"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "force_zeros_for_empty_prompt": True,
    }, indent=2), encoding="utf-8")
    return folder


def ensure_tiny_sdxl_model(root: Path | None = None) -> Path:
    """The tiny SDXL model's folder in the cache, built on first use (see :func:`ensure_entry`)."""
    key = {"model": TINY_SDXL, "version": TINY_SDXL_VERSION, "seed": 0}
    return ensure_entry(f"{TINY_SDXL}-{TINY_SDXL_VERSION}", key, build_tiny_sdxl_model,
                        (root or cache_root()) / "models")
