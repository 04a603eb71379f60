"""ModelSpec: every fact about a model that the math, the backends and engine builds need, declared once.

It is read from the model's configs when the model loads (``dreamwire.models``)
and never guessed from a name. The engine reads the scheduler facts, the
backends and TensorRT plans read the tensor shapes; none of them touches the
modules themselves to find these out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dreamwire.control.schema import T_INDEX_GRID

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
MODEL_KINDS = ("lcm", "turbo", "sd")
FAMILIES = ("sd", "sdxl")  # architecture: SD 1.x/2.x, or SDXL (two text encoders + added conditioning)
TIME_IDS = 6  # SDXL time_ids: original (h, w), crop (top, left), target (h, w)


@dataclass(frozen=True, eq=False)
class ModelSpec:
    kind: str  # "lcm" (LCM-distilled), "turbo" (ADD-distilled) or "sd" (needs LCM-LoRA)
    alphas_cumprod: torch.Tensor = field(repr=False)
    prediction_type: str = "epsilon"
    num_train_timesteps: int = 1000
    original_steps: int = T_INDEX_GRID  # LCM grid length that t_index_list indexes
    timestep_scaling: float = 10.0
    latent_channels: int = 4
    out_channels: int = 4
    vae_scale_factor: int = 8  # pixels per latent pixel
    vae_scaling_factor: float = 1.0  # latents are multiplied by this after encoding
    text_tokens: int = 77
    text_dim: int = 768
    unet_downsamples: int = 3
    family: str = "sd"  # "sdxl": the UNet also takes text_embeds (pooled) and time_ids
    pooled_dim: int = 0  # SDXL: width of the pooled text embedding (text_encoder_2's projection)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"model family must be one of {FAMILIES}, got {self.family!r}")
        if (self.family == "sdxl") != (self.pooled_dim > 0):
            raise ValueError("an SDXL spec needs pooled_dim > 0, and only SDXL has one")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}; expected one of "
                             f"{PREDICTION_TYPES}")

    def added_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the UNet's added conditioning inputs (diffusers' ``added_cond_kwargs``); empty for SD.

        Graph exports and TensorRT profiles size their extra inputs from this.
        """
        if self.family != "sdxl":
            return {}
        return {"text_embeds": (batch, self.pooled_dim), "time_ids": (batch, TIME_IDS)}

    @property
    def size_alignment(self) -> int:
        """Pixel multiple every side must have for traced graphs: VAE factor x the UNet's downsampling."""
        return self.vae_scale_factor * 2**self.unet_downsamples
