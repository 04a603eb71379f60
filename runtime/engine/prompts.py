"""Text conditioning: a small LRU of prompt embeddings and weighted prompt blends.

Encoding a prompt costs a CLIP pass; live shows flip between a handful of
prompts, so embeddings are cached by text and a blend only re-mixes cached
tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from dreamwire.engine.conditioning import Conditioning


def token_ids(tokenizer, text: str, device: torch.device) -> torch.Tensor:
    """``text`` padded/truncated to the tokenizer's full length, as diffusers' pipelines tokenise it."""
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


class PromptEncoder:
    """Tokenise + encode with the model's CLIP text encoder, caching the last ``capacity`` texts."""

    def __init__(self, tokenizer, text_encoder, device: torch.device | str, dtype: torch.dtype,
                 capacity: int = 32) -> None:
        self._tokenizer = tokenizer
        self._encoder = text_encoder
        self._device = torch.device(device)
        self._dtype = dtype
        self._capacity = capacity
        self._cache: OrderedDict[str, Conditioning] = OrderedDict()
        self.encodes = 0  # CLIP passes actually run; tests use it to see the cache work

    @torch.inference_mode()
    def encode(self, text: str) -> Conditioning:
        """``text``'s conditioning: hidden states (1, tokens, dim)."""
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        emb = self._encode_uncached(text)
        self.encodes += 1
        self._cache[text] = emb
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return emb

    def _encode_uncached(self, text: str) -> Conditioning:
        """One CLIP pass: the last hidden states, as diffusers' StableDiffusionPipeline uses them."""
        ids = token_ids(self._tokenizer, text, self._encoder.device)
        return Conditioning(self._encoder(ids)[0].to(device=self._device, dtype=self._dtype))

    def encode_blend(self, pairs: Sequence[tuple[str, float]]) -> Conditioning:
        """Weighted mean of the prompts' conditionings (weights normalised to sum 1)."""
        return Conditioning.blend([self.encode(t) for t, _ in pairs], [w for _, w in pairs])
