"""Loading a diffusion model's parts with ``from_pretrained``, and reading its :class:`ModelSpec`.

Everything a user points ``--model`` at (hub id, local diffusers folder, or
``tiny``) goes through :func:`load_model`, so the offline tiny model exercises
exactly the loading code real weights use. The model kind (turbo / LCM /
plain SD needing LCM-LoRA) is read from the scheduler config and the family
(SD or SDXL) from the UNet and pipeline configs, never guessed from the name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dreamwire.engine.spec import TIME_IDS, ModelSpec
from dreamwire.models.demo import DEMO, demo_model_dir
from dreamwire.models.lora import fuse_loras
from dreamwire.models.parts import ModelLoadError, ModelParts
from dreamwire.models.sources import DEFAULT_LCM_LORA, DEFAULT_LCM_LORA_SDXL
from dreamwire.models.tiny import TINY, ensure_tiny_model
from dreamwire.models.tiny_sdxl import TINY_SDXL, ensure_tiny_sdxl_model

log = logging.getLogger(__name__)

# offline models: the packaged demo (trained weights) and the random-weight test models
BUILTIN = {DEMO: demo_model_dir, TINY: ensure_tiny_model, TINY_SDXL: ensure_tiny_sdxl_model}
DEFAULT_TAESDXL = "madebyollin/taesdxl"
OWN_VAE = "none"  # --taesd none: keep the pipeline's own VAE (SDXL's default is TAESDXL)


def detect_family(index: dict, unet_config: dict) -> str:
    """'sdxl' when the UNet takes SDXL's added conditioning or the pipeline says it is SDXL, else 'sd'."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sdxl" if str(index.get("_class_name", "")).startswith("StableDiffusionXL") else "sd"


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


def _not_cached(model: str) -> ModelLoadError:
    """A hub id that is not in the local cache while the hub cannot be reached: where to get it, in one line."""
    from huggingface_hub import constants

    return ModelLoadError(
        f"model {model!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub cannot be "
        f"reached (offline): on a machine with network run `hf download {model}` (older huggingface_hub: "
        f"`huggingface-cli download {model}`), then copy that cache here or point HF_HOME at it; or give a local "
        f"diffusers folder with --model PATH")


def _cache_miss(exc: BaseException | None) -> bool:
    """Whether the hub library gave up because the file is neither reachable nor cached (the cause of
    diffusers' misleading "does not appear to have a file named model_index.json")."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    while exc is not None:
        if isinstance(exc, LocalEntryNotFoundError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _in_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model_index.json"), str)


def _fail(model: str, exc: BaseException) -> ModelLoadError:
    if not _looks_local(model) and model not in BUILTIN and _cache_miss(exc) and not _in_cache(model):
        return _not_cached(model)  # (a missing TAESD or LoRA of a cached model gets the general line)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"could not load model {model!r} ({reason[:200]}). Provide weights: a local diffusers folder "
        f"(--model PATH), or a hub id already in the Hugging Face cache or reachable after "
        f"`hf auth login` (older huggingface_hub: `huggingface-cli login`); `--model demo` (the default) and "
        f"`--model tiny` run offline, built in."
    )


def _looks_local(model: str) -> bool:
    """A hub id is ``owner/name``; anything else that looks like a path is treated as a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).is_dir()


def check_source(model: str) -> None:
    """Fail fast (before bridges open or weights load) on a local model folder that isn't there, or a hub
    id that offline mode (HF_HUB_OFFLINE) cannot find in the cache."""
    if model in BUILTIN:
        return
    if _looks_local(model):
        if not Path(model).expanduser().is_dir():
            raise _fail(model, FileNotFoundError(f"no such folder: {model}"))
        return
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE and not _in_cache(model):
        raise _not_cached(model)


def _load_config(cls: Any, model: str, subfolder: str | None) -> dict:
    kwargs = {"subfolder": subfolder} if subfolder else {}
    return dict(cls.load_config(model, **kwargs))


def _pooled_dim(model: str, unet: Any, text_encoder: Any, text_encoder_2: Any) -> int:
    """SDXL's pooled width, from the UNet config, checked against both encoders (one clear line if not)."""
    cfg = unet.config
    if cfg.get("addition_embed_type") != "text_time" or not cfg.get("addition_time_embed_dim"):
        raise ModelLoadError(f"model {model!r} is an SDXL pipeline but its UNet does not take SDXL's added "
                             f"conditioning (addition_embed_type 'text_time')")
    pooled = int(cfg["projection_class_embeddings_input_dim"]) - TIME_IDS * int(cfg["addition_time_embed_dim"])
    widths = int(text_encoder.config.hidden_size) + int(text_encoder_2.config.hidden_size)
    if pooled != int(text_encoder_2.config.projection_dim) or widths != int(cfg["cross_attention_dim"]):
        raise ModelLoadError(
            f"model {model!r}: the text encoders do not fit the UNet (hidden {widths} vs cross_attention_dim "
            f"{cfg['cross_attention_dim']}, pooled {text_encoder_2.config.projection_dim} vs {pooled})")
    return pooled


def read_spec(kind: str, scheduler_config: dict, unet: Any, vae: Any, tokenizer: Any, *, family: str = "sd",
              pooled_dim: int = 0) -> ModelSpec:
    """The model facts, from its configs as loaded (never from its name)."""
    from diffusers import LCMScheduler

    lcm = LCMScheduler.from_config(scheduler_config)
    vae_blocks = vae.config.get("block_out_channels") or vae.config.get("encoder_block_out_channels")
    return ModelSpec(
        kind=kind,
        alphas_cumprod=lcm.alphas_cumprod.clone(),
        prediction_type=scheduler_config.get("prediction_type", "epsilon"),
        num_train_timesteps=int(lcm.config.num_train_timesteps),
        original_steps=int(lcm.config.original_inference_steps),
        timestep_scaling=float(lcm.config.timestep_scaling),
        latent_channels=int(unet.config.in_channels),
        out_channels=int(unet.config.out_channels),
        vae_scale_factor=2 ** (len(vae_blocks) - 1),
        vae_scaling_factor=float(vae.config.get("scaling_factor", 1.0)),
        text_tokens=int(getattr(tokenizer, "model_max_length", 77) or 77),
        text_dim=int(unet.config.cross_attention_dim),
        unet_downsamples=len(unet.config.block_out_channels) - 1,
        family=family,
        pooled_dim=pooled_dim,
    )


def _vae(diffusers: Any, source: str, index: dict, family: str, taesd: str | None, dtype: torch.dtype
         ) -> tuple[Any, str | None]:
    """The VAE to run and the TAESD source it came from (``None``: the pipeline's own).

    SDXL defaults to TAESDXL: the full SDXL VAE costs most of a 512² frame and overflows in float16.
    """
    own_cls = index.get("vae", [None, "AutoencoderKL"])[1]
    if taesd is None and family == "sdxl" and own_cls != "AutoencoderTiny":
        taesd = DEFAULT_TAESDXL
    if taesd and taesd.lower() != OWN_VAE:
        return diffusers.AutoencoderTiny.from_pretrained(taesd, torch_dtype=dtype), taesd
    return getattr(diffusers, own_cls).from_pretrained(source, subfolder="vae", torch_dtype=dtype), None


def load_model(
    model: str = TINY,
    *,
    taesd: str | None = None,
    lcm_lora: str | None = DEFAULT_LCM_LORA,
    loras: Sequence[tuple[str, float]] = (),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ModelParts:
    """Load UNet, VAE (or TAESD), text encoder(s), tokenizer(s) and scheduler config.

    ``taesd`` replaces the pipeline's VAE by an ``AutoencoderTiny`` from that id
    or folder (SDXL: ``madebyollin/taesdxl`` unless given; ``"none"`` keeps the
    pipeline's VAE). ``lcm_lora`` is fused into plain SD models only (never into
    turbo or LCM models; SDXL gets the SDXL LCM-LoRA in place of the SD 1.5
    default); pass ``None`` to skip it. ``loras`` (path, scale) are the user's
    style LoRAs, fused into every kind of model, turbo included.
    """
    import diffusers
    from diffusers import LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    check_source(model)
    source = str(BUILTIN[model]()) if model in BUILTIN else model
    source = str(Path(source).expanduser()) if _looks_local(source) else source
    text_encoder_2 = tokenizer_2 = None
    try:
        index = _load_config(diffusers.DiffusionPipeline, source, None)
        scheduler_config = _load_config(LCMScheduler, source, "scheduler")
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype)
        family = detect_family(index, dict(unet.config))
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        if family == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2",
                                                                         torch_dtype=dtype)
            tokenizer_2 = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2")
        vae, taesd = _vae(diffusers, source, index, family, taesd, dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise _fail(model, exc) from exc
    pooled = _pooled_dim(model, unet, text_encoder, text_encoder_2) if family == "sdxl" else 0

    kind = detect_kind(scheduler_config)
    if family == "sdxl" and lcm_lora == DEFAULT_LCM_LORA:
        lcm_lora = DEFAULT_LCM_LORA_SDXL
    fused = lcm_lora if kind == "sd" and lcm_lora else None
    if kind == "sd" and not fused:
        log.warning("%s is a plain SD model and no LCM-LoRA was given: few-step output will be poor", model)
    plan = ([(fused, 1.0, "LCM-LoRA")] if fused else []) + [(p, float(w), "LoRA") for p, w in loras]
    if plan:
        unet = fuse_loras(unet, vae, text_encoder, tokenizer, scheduler_config, plan, model,
                          text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
    for m in (unet, vae, text_encoder, text_encoder_2):
        if m is not None:
            m.to(device=device).eval().requires_grad_(False)
    return ModelParts(
        source=source,
        spec=read_spec(kind, scheduler_config, unet, vae, tokenizer, family=family, pooled_dim=pooled),
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        lcm_lora=fused,
        loras=tuple((p, w) for p, w, _ in plan),
        taesd=taesd,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
