"""ControlNets: loaded with ``ControlNetModel.from_pretrained`` and checked against the UNet they steer.

``--controlnet ID[:SCALE]`` names a hub id or a local diffusers folder; ``tiny``
is a random-weight ControlNet built from the tiny UNet (``ControlNetModel.from_unet``),
saved once into the cache and loaded back through ``from_pretrained`` like the
tiny model, so tests exercise the real loading path. A ControlNet whose shapes
do not fit the UNet fails here with one line, not inside the first UNet call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dreamwire.models.parts import ModelLoadError
from dreamwire.models.sources import ControlNetSource
from dreamwire.models.store import cache_root, ensure_entry
from dreamwire.models.tiny import TINY, tiny_modules

TINY_CONTROLNET_VERSION = "v1"
MATCHED = ("block_out_channels", "cross_attention_dim", "in_channels")


def build_tiny_controlnet(folder: Path, seed: int = 0) -> Path:
    """A random-weight ControlNet shaped like the tiny UNet, written as a diffusers folder."""
    from diffusers import ControlNetModel

    unet = tiny_modules(vocab_size=8, seed=seed)["unet"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
        # from_unet zero-initialises the output convolutions (a fresh ControlNet changes nothing); random
        # weights there make every test see the residuals.
        for p in net.parameters():
            if not p.abs().sum():
                p.data.normal_(0.0, 0.05)
    net.save_pretrained(folder)
    return Path(folder)


def ensure_tiny_controlnet(root: Path | None = None) -> Path:
    key = {"model": "tiny-controlnet", "version": TINY_CONTROLNET_VERSION, "seed": 0}
    return ensure_entry(f"tiny-controlnet-{TINY_CONTROLNET_VERSION}", key, build_tiny_controlnet,
                        (root or cache_root()) / "models")


def _fail(source: str, reason: str) -> ModelLoadError:
    return ModelLoadError(f"could not load ControlNet {source!r} ({reason[:200]}). Give a local diffusers "
                          f"ControlNet folder or a hub id already in the Hugging Face cache; "
                          f"`--controlnet tiny` is a built-in random-weight one for the tiny model.")


def check_fits(source: str, config: dict, unet_config: dict) -> None:
    """Raise ModelLoadError when this ControlNet cannot steer this UNet (other family, other shapes)."""
    net_sdxl = config.get("addition_embed_type") == "text_time"
    unet_sdxl = unet_config.get("addition_embed_type") == "text_time"
    if net_sdxl != unet_sdxl:
        which = "an SDXL ControlNet on an SD 1.5/2.1 model" if net_sdxl else "an SD 1.5/2.1 ControlNet on an SDXL model"
        raise ModelLoadError(f"ControlNet {source!r} does not fit the model: {which}; pick one trained for "
                             f"the model's family")
    for key in MATCHED:
        a, b = config.get(key), unet_config.get(key)
        if a is not None and b is not None and (list(a) if isinstance(a, (list, tuple)) else a) != \
                (list(b) if isinstance(b, (list, tuple)) else b):
            raise ModelLoadError(f"ControlNet {source!r} does not fit the model: its {key} is {a}, the UNet's "
                                 f"is {b}; pick a ControlNet trained for this model's family")


def _local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1 or Path(source).is_dir()


def check_controlnet_source(source: str) -> None:
    """Fail fast, before the model loads, on a local ControlNet folder that is not there."""
    if source != TINY and _local(source) and not Path(source).expanduser().is_dir():
        raise _fail(source, f"no such folder: {source}")


def load_controlnets(sources: tuple[ControlNetSource, ...], unet: Any, *, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> tuple[Any, ...]:
    """Each ControlNet loaded, checked against ``unet``'s config, on ``device`` in ``dtype``, in eval mode."""
    from diffusers import ControlNetModel

    nets = []
    for src in sources:
        check_controlnet_source(src.source)
        path = str(ensure_tiny_controlnet()) if src.source == TINY else src.source
        path = str(Path(path).expanduser()) if _local(path) else path
        try:
            config = dict(ControlNetModel.load_config(path))
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise _fail(src.source, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        ) from exc
        check_fits(src.source, config, dict(unet.config))
        try:
            net = ControlNetModel.from_pretrained(path, torch_dtype=dtype)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise _fail(src.source, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        ) from exc
        nets.append(net.to(device=device).eval().requires_grad_(False))
    return tuple(nets)
