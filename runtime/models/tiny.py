"""The built-in ``tiny`` model: random weights built in code, saved as a real diffusers folder.

It exists so the whole runtime (loading, engine, backends, bridges) runs
offline and in CI through exactly the ``from_pretrained`` code real weights
use. Sizes follow diffusers' own tests, so a 256x256 frame costs tens of
milliseconds on a CPU. It is written once into the cache as a store entry
(checked against its manifest), like exported graphs and engines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dreamwire.models.store import cache_root, ensure_entry

TINY = "tiny"
TINY_VERSION = "v1"


def _byte_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


_TINY_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("o", "n</w>"), ("e", "r</w>")]


def _write_tiny_tokenizer(folder: Path) -> int:
    """A byte-level CLIP BPE vocabulary built in code; returns its size."""
    return write_bpe_tokenizer(folder, _TINY_MERGES)


def write_bpe_tokenizer(folder: Path, merges: list[tuple[str, str]]) -> int:
    """A CLIP BPE tokenizer folder built in code (no download): the 256 byte symbols, their word-final
    forms, what ``merges`` make, and the two specials; returns the vocabulary size."""
    base = list(_byte_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    known = set(tokens)
    tokens += [t for t in dict.fromkeys(a + b for a, b in merges) if t not in known]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }), encoding="utf-8")
    return len(vocab)


def tiny_modules(vocab_size: int, seed: int = 0) -> dict[str, Any]:
    """Random-weight UNet, CLIP text encoder and TAESD-style VAE, deterministic in ``seed``.

    Sizes follow diffusers' own tests: a (32, 64) UNet with cross-attention 32,
    a 2-layer CLIP text encoder, and a 16-channel AutoencoderTiny, so a 256x256
    frame costs tens of milliseconds on a CPU.
    """
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        ))
        vae = AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16), decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
        )
    return {"unet": unet, "text_encoder": text_encoder, "vae": vae}


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write the tiny random-weight pipeline (LCM scheduler, TAESD-style VAE) as a diffusers folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tiny_tokenizer(folder / "tokenizer")
    for name, module in tiny_modules(vocab_size, seed).items():
        module.save_pretrained(folder / name)
    write_pipeline_files(folder)
    return folder


def ensure_tiny_model(root: Path | None = None) -> Path:
    """The tiny model's folder in the cache, built (under a temporary name, then renamed) on first use."""
    key = {"model": TINY, "version": TINY_VERSION, "seed": 0}
    return ensure_entry(f"{TINY}-{TINY_VERSION}", key, build_tiny_model, (root or cache_root()) / "models")


def write_pipeline_files(folder: Path) -> None:
    """The SD pipeline's scheduler and ``model_index.json`` (TAESD as the VAE), so ``from_pretrained`` reads
    the folder as any hub model; the built-in models (tiny, demo) write their networks beside them."""
    from diffusers import LCMScheduler

    LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").save_pretrained(
        folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.27.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderTiny"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "LCMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }, indent=2), encoding="utf-8")
