"""Random-weight models with real architectures, for benchmarks and the GPU validation run, offline.

Timing depends on architecture, not weights, so the GPU run needs no
download: the UNet comes from the sd-turbo or sdxl-turbo config shipped in
``dreamwire/configs`` and TAESD/TAESDXL is ``AutoencoderTiny()``'s defaults
(their real layout; the two differ only in weights). Text conditioning is a
seeded random embedding per prompt instead of a CLIP pass (prompts are
encoded once per change, never per frame, so they do not enter frame
timings); for SDXL that includes a random pooled embedding and real
``time_ids``. ``arch="tiny"`` / ``"tiny-sdxl"`` swap in the tiny models'
architectures so the same run finishes in seconds on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from importlib import resources
from types import SimpleNamespace

import torch

from dreamwire.bench.options import ARCHS
from dreamwire.engine.conditioning import Conditioning
from dreamwire.engine.prompts_sdxl import time_ids
from dreamwire.engine.spec import TIME_IDS, ModelSpec
from dreamwire.models.parts import ModelParts

CONFIGS = {"sd-turbo": "sd_turbo_unet.json", "sdxl-turbo": "sdxl_turbo_unet.json"}


def unet_config(arch: str) -> dict:
    """The shipped UNet config of a real architecture (``CONFIGS``)."""
    return json.loads(resources.files("dreamwire").joinpath(f"configs/{CONFIGS[arch]}").read_text("utf-8"))


def sd_turbo_config() -> dict:
    return unet_config("sd-turbo")


def sdxl_turbo_config() -> dict:
    return unet_config("sdxl-turbo")


def _modules(arch: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    if arch in ("tiny", "tiny-sdxl"):
        from dreamwire.models.tiny import tiny_modules
        from dreamwire.models.tiny_sdxl import tiny_sdxl_modules

        mods = (tiny_modules if arch == "tiny" else tiny_sdxl_modules)(vocab_size=520)
        return mods["unet"], mods["vae"], dict(mods["unet"].config)
    cfg = unet_config(arch)
    return UNet2DConditionModel.from_config(cfg), AutoencoderTiny(), cfg


def _pooled_dim(cfg: dict) -> int:
    """SDXL's pooled width from the UNet config alone (its added-embedding input minus the 6 time embeddings)."""
    if cfg.get("addition_embed_type") != "text_time":
        return 0
    return int(cfg["projection_class_embeddings_input_dim"]) - TIME_IDS * int(cfg["addition_time_embed_dim"])


def random_parts(device: torch.device, dtype: torch.dtype, seed: int = 0, arch: str = "sd-turbo") -> ModelParts:
    """ModelParts of architecture ``arch`` with random weights, deterministic in ``seed``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae, cfg = _modules(arch)
    unet = unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae = vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae_blocks = vae.config.get("encoder_block_out_channels") or vae.config.get("block_out_channels")
    spec = ModelSpec(kind="turbo", alphas_cumprod=torch.linspace(0.999, 0.005, 1000), latent_channels=4,
                     out_channels=int(cfg["out_channels"]), vae_scale_factor=2 ** (len(vae_blocks) - 1),
                     vae_scaling_factor=float(vae.config.scaling_factor), text_tokens=77,
                     text_dim=int(cfg["cross_attention_dim"]), unet_downsamples=len(cfg["block_out_channels"]) - 1,
                     family="sdxl" if _pooled_dim(cfg) else "sd", pooled_dim=_pooled_dim(cfg))
    fingerprint = hashlib.sha256(f"{arch}|{json.dumps(cfg, sort_keys=True, default=str)}|{seed}".encode())
    return ModelParts(source=f"random:{arch}", spec=spec, unet=unet, vae=vae, text_encoder=None,
                      tokenizer=SimpleNamespace(model_max_length=77), fingerprint=fingerprint.hexdigest()[:24])


class RandomPrompts:
    """The :class:`~dreamwire.engine.prompts.PromptEncoder` interface with a seeded embedding per text."""

    def __init__(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
                 size: tuple[int, int] = (512, 512)) -> None:
        self.shape = (1, spec.text_tokens, spec.text_dim)
        self.pooled = spec.pooled_dim
        self.size = size
        self.device, self.dtype = device, dtype
        self._cache: dict[str, Conditioning] = {}

    def encode(self, text: str) -> Conditioning:
        hit = self._cache.get(text)
        if hit is None:
            gen = torch.Generator("cpu").manual_seed(zlib.crc32(text.encode("utf-8")))
            hidden = torch.randn(self.shape, generator=gen)
            added = {"text_embeds": torch.randn(1, self.pooled, generator=gen),
                     "time_ids": time_ids(self.size, (0, 0), self.size)} if self.pooled else {}
            hit = self._cache[text] = Conditioning(hidden, added).to(device=self.device, dtype=self.dtype)
        return hit

    def encode_blend(self, pairs: Sequence[tuple[str, float]]) -> Conditioning:
        return Conditioning.blend([self.encode(t) for t, _ in pairs], [w for _, w in pairs])
