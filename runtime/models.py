"""Loading a diffusion model's parts with ``from_pretrained``, and the built-in ``tiny`` model.

Everything a user points ``--model`` at (hub id, local diffusers folder, or
``tiny``) goes through :func:`load_model`, so the offline tiny model exercises
exactly the loading code real weights use. The model kind (turbo / LCM /
plain SD needing LCM-LoRA) is read from the scheduler config, never guessed
from the name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

TINY = "tiny"
TINY_VERSION = "v1"
DEFAULT_TAESD = "madebyollin/taesd"
DEFAULT_LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; ``str()`` is one line telling the user what to do."""


@dataclass
class ModelParts:
    """The loaded modules plus the config facts the engine needs."""

    source: str
    kind: str  # "lcm" | "turbo" | "sd"
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    prediction_type: str
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    original_steps: int
    timestep_scaling: float
    latent_channels: int
    vae_scale_factor: int
    vae_scaling_factor: float
    lcm_lora: str | None = None
    loras: tuple[tuple[str, float], ...] = ()  # everything fused, LCM-LoRA first, with scales
    taesd: str | None = None


def cache_root() -> Path:
    """Where dreamwire keeps the tiny model and built engines (``$DREAMWIRE_CACHE`` overrides)."""
    env = os.environ.get("DREAMWIRE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dreamwire"))


def detect_kind(scheduler_config: dict) -> str:
    """'lcm' for LCM-distilled models, 'turbo' for ADD-distilled (sd-turbo), else 'sd'.

    sd-turbo and sdxl-turbo ship an Euler scheduler with ``timestep_spacing``
    'trailing'; LCM-distilled models ship ``LCMScheduler``; anything else is a
    plain SD model that needs LCM-LoRA for few-step sampling.
    """
    cls = scheduler_config.get("_class_name", "")
    if cls == "LCMScheduler":
        return "lcm"
    if cls.startswith("Euler") and scheduler_config.get("timestep_spacing") == "trailing":
        return "turbo"
    return "sd"


def _fail(model: str, exc: BaseException) -> ModelLoadError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"could not load model {model!r} ({reason[:200]}). Provide weights: a local diffusers folder "
        f"(--model PATH), or a hub id already in the Hugging Face cache or reachable after "
        f"`huggingface-cli login`; `--model tiny` runs offline with a built-in random-weight model."
    )


def _looks_local(model: str) -> bool:
    """A hub id is ``owner/name``; anything else that looks like a path is treated as a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).is_dir()


def check_source(model: str) -> None:
    """Fail fast (before bridges open or weights load) on a local model folder that isn't there."""
    if model != TINY and _looks_local(model) and not Path(model).expanduser().is_dir():
        raise _fail(model, FileNotFoundError(f"no such folder: {model}"))


def _load_config(cls: Any, model: str, subfolder: str | None) -> dict:
    kwargs = {"subfolder": subfolder} if subfolder else {}
    return dict(cls.load_config(model, **kwargs))


def load_model(
    model: str = TINY,
    *,
    taesd: str | None = None,
    lcm_lora: str | None = DEFAULT_LCM_LORA,
    loras: Sequence[tuple[str, float]] = (),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ModelParts:
    """Load UNet, VAE (or TAESD), text encoder, tokenizer and scheduler config.

    ``taesd`` replaces the pipeline's VAE by an ``AutoencoderTiny`` from that id
    or folder. ``lcm_lora`` is fused into plain SD models only (never into turbo
    or LCM models); pass ``None`` to skip it. ``loras`` (path, scale) are the
    user's style LoRAs, fused into every kind of model, turbo included.
    """
    import diffusers
    from diffusers import LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    check_source(model)
    source = str(ensure_tiny_model()) if model == TINY else model
    source = str(Path(source).expanduser()) if _looks_local(source) else source
    try:
        index = _load_config(diffusers.DiffusionPipeline, source, None)
        scheduler_config = _load_config(LCMScheduler, source, "scheduler")
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        if taesd:
            vae = diffusers.AutoencoderTiny.from_pretrained(taesd, torch_dtype=dtype)
        else:
            vae_cls = getattr(diffusers, index.get("vae", [None, "AutoencoderKL"])[1])
            vae = vae_cls.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise _fail(model, exc) from exc

    kind = detect_kind(scheduler_config)
    fused = lcm_lora if kind == "sd" and lcm_lora else None
    if kind == "sd" and not fused:
        log.warning("%s is a plain SD model and no LCM-LoRA was given: few-step output will be poor", model)
    plan = ([(fused, 1.0, "LCM-LoRA")] if fused else []) + [(p, float(w), "LoRA") for p, w in loras]
    if plan:
        unet = _fuse_loras(unet, vae, text_encoder, tokenizer, scheduler_config, plan, model)

    lcm = LCMScheduler.from_config(scheduler_config)
    for m in (unet, vae, text_encoder):
        m.to(device=device).eval().requires_grad_(False)
    vae_blocks = vae.config.get("block_out_channels") or vae.config.get("encoder_block_out_channels")
    return ModelParts(
        source=source,
        kind=kind,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        prediction_type=scheduler_config.get("prediction_type", "epsilon"),
        alphas_cumprod=lcm.alphas_cumprod.clone(),
        num_train_timesteps=int(lcm.config.num_train_timesteps),
        original_steps=int(lcm.config.original_inference_steps),
        timestep_scaling=float(lcm.config.timestep_scaling),
        latent_channels=int(unet.config.in_channels),
        vae_scale_factor=2 ** (len(vae_blocks) - 1),
        vae_scaling_factor=float(vae.config.get("scaling_factor", 1.0)),
        lcm_lora=fused,
        loras=tuple((p, w) for p, w, _ in plan),
        taesd=taesd,
    )


def _fuse_loras(unet, vae, text_encoder, tokenizer, scheduler_config, loras: Sequence[tuple[str, float, str]],
                model: str):
    """Fuse LoRAs (path, scale, what-for) into the UNet and text encoder, one by one, via diffusers' loader.

    Fused weights cost nothing per frame and go into exported graphs and
    engines like any weight (the engine cache key lists the LoRAs and scales).
    """
    from diffusers import LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=LCMScheduler.from_config(scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    for path, scale, what in loras:
        try:
            pipe.load_lora_weights(path)
        except ImportError as exc:
            raise ModelLoadError(f"{what} needs peft: pip install 'dreamwire[lora]' ({exc})") from exc
        except (OSError, ValueError, KeyError) as exc:
            flag = "--lcm-lora" if what == "LCM-LoRA" else "--lora"
            raise ModelLoadError(f"could not load {what} {path!r} for {model!r}: {str(exc).splitlines()[0]}. "
                                 f"Pass a local LoRA file/folder with {flag} PATH.") from exc
        pipe.fuse_lora(lora_scale=scale)
        pipe.unload_lora_weights()
    return pipe.unet


def parse_lora(text: str) -> tuple[str, float]:
    """``"path/or/id[:SCALE]"`` -> (path, scale); a Windows drive colon is not a scale."""
    path, sep, tail = text.rpartition(":")
    if sep and path and not tail.startswith(("\\", "/")):
        try:
            return path, float(tail)
        except ValueError:
            pass
    return text, 1.0


# --- the built-in tiny model ------------------------------------------------------------------


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
    base = list(_byte_unicode().values())
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in _TINY_MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _TINY_MERGES), encoding="utf-8")
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
    from diffusers import LCMScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tiny_tokenizer(folder / "tokenizer")
    for name, module in tiny_modules(vocab_size, seed).items():
        module.save_pretrained(folder / name)
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
    return folder


def ensure_tiny_model(root: Path | None = None) -> Path:
    """The tiny model's folder, built on first use; written to a temp folder and renamed into place."""
    target = (root or cache_root()) / "models" / f"tiny-{TINY_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny_model(tmp)
        with contextlib.suppress(OSError):  # another process may have won the race; theirs is identical
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
