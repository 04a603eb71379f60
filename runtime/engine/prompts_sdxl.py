"""SDXL text conditioning: two CLIP encoders, a pooled embedding and ``time_ids`` per prompt.

Computed the way diffusers' ``StableDiffusionXLPipeline.encode_prompt`` does
(penultimate hidden states of both encoders concatenated on the last axis,
text_encoder_2's projected pooled output), so real SDXL weights see exactly the
conditioning they were trained with. ``time_ids`` are fixed per engine (its
output size, no crop): they go into every row as added conditioning, and the
cache and blending in :class:`PromptEncoder` then work unchanged.
"""

from __future__ import annotations

import torch

from dreamwire.engine.conditioning import Conditioning
from dreamwire.engine.prompts import PromptEncoder, token_ids


def time_ids(original: tuple[int, int], crop: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """(1, 6): original (h, w), crop top-left (top, left), target (h, w): SDXL's micro-conditioning."""
    return torch.tensor([[*original, *crop, *target]], dtype=torch.float32)


class SDXLPromptEncoder(PromptEncoder):
    """``encode(text)`` -> ``Conditioning(hidden, added={"text_embeds", "time_ids"})``, cached per text.

    ``size`` is the engine's (height, width); sdxl-turbo's pipeline uses it as both original and target size.
    """

    def __init__(self, tokenizers, text_encoders, device: torch.device | str, dtype: torch.dtype, *,
                 size: tuple[int, int] = (512, 512), crop: tuple[int, int] = (0, 0), capacity: int = 32) -> None:
        if len(tokenizers) != 2 or len(text_encoders) != 2:
            raise ValueError("SDXL needs two tokenizers and two text encoders")
        super().__init__(tokenizers[0], text_encoders[0], device, dtype, capacity)
        self._tokenizers = tuple(tokenizers)
        self._encoders = tuple(text_encoders)
        self._time_ids = time_ids(size, crop, size)

    def _encode_uncached(self, text: str) -> Conditioning:
        hidden = []
        out = None
        for tok, enc in zip(self._tokenizers, self._encoders):
            out = enc(token_ids(tok, text, enc.device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
        pooled = out.text_embeds  # only text_encoder_2 (WithProjection) has a pooled projection
        cast = {"device": self._device, "dtype": self._dtype}
        return Conditioning(torch.cat(hidden, dim=-1).to(**cast),
                            {"text_embeds": pooled.to(**cast), "time_ids": self._time_ids.to(**cast)})
