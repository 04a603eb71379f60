"""LoRA fusion: LCM-LoRA for plain SD models and the user's style LoRAs, fused into the weights at load.

Fused weights cost nothing per frame and go into exported graphs and engines
like any weight (the engine cache key lists the LoRAs and their scales).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dreamwire.models.parts import ModelLoadError


def fuse_loras(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler_config: dict,
               loras: Sequence[tuple[str, float, str]], model: str, *, text_encoder_2: Any = None,
               tokenizer_2: Any = None) -> Any:
    """Fuse LoRAs (path, scale, what-for) into the UNet and text encoder(s), one by one; returns the UNet.

    diffusers' pipeline loader does the key mapping for every LoRA format it
    knows, so the modules are put into a throwaway pipeline just for that (the
    SDXL pipeline when there is a second text encoder).
    """
    from diffusers import LCMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = LCMScheduler.from_config(scheduler_config)
    if text_encoder_2 is not None:
        pipe = StableDiffusionXLPipeline(
            vae=None, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
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
