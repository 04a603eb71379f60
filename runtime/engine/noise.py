"""The engine's fixed noise: drawn once per seed (or seed blend) and reused every frame.

StreamDiffusion reuses the same noise for every frame, which is what keeps
the output temporally stable. Blends mix independent unit Gaussians and
rescale to unit variance; a small LRU keeps the last few so flipping between
scenes costs no new draws.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

SeedPairs = tuple[tuple[int, float], ...]


def blend_noise(parts: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """A weighted sum of independent unit Gaussians, rescaled back to unit variance."""
    w = torch.tensor([float(x) for x in weights], dtype=torch.float32)
    return sum(wi * p for wi, p in zip(w, parts)) / w.square().sum().sqrt()


class NoiseBank:
    """Seeded noise of one shape on the engine's device, cached by seed blend."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, capacity: int = 8) -> None:
        self.shape = shape
        self.device = device
        self.dtype = dtype
        self.capacity = capacity
        self._cache: OrderedDict[SeedPairs, torch.Tensor] = OrderedDict()

    def get(self, pairs: SeedPairs) -> torch.Tensor:
        hit = self._cache.get(pairs)
        if hit is not None:
            self._cache.move_to_end(pairs)
            return hit
        parts = [torch.randn(self.shape, generator=torch.Generator("cpu").manual_seed(int(seed)), dtype=torch.float32)
                 for seed, _ in pairs]
        hit = blend_noise(parts, [w for _, w in pairs]).to(self.device, self.dtype)
        self._cache[pairs] = hit
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return hit
