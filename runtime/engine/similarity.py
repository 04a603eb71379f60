"""Stochastic similarity filter: skip near-identical input frames without touching UNet or VAE.

The decision is a pure function of the cosine similarity, the threshold and a
uniform draw from the filter's own seeded RNG, so tests are deterministic.
Unlike the original, a skip never sleeps (the device is freed at once) and the
skip cap counts *consecutive* skips.
"""

from __future__ import annotations

import random

import torch


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> float:
    a = a.reshape(-1).float()
    b = b.reshape(-1).float()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(eps))


def skip_probability(cos: float, threshold: float) -> float:
    """``max(0, 1 - (1 - cos) / (1 - threshold))``: 0 at or below the threshold, 1 for identical input."""
    if threshold >= 1.0:
        return 0.0
    return max(0.0, 1.0 - (1.0 - cos) / (1.0 - threshold))


class SimilarityFilter:
    """Decides per frame whether to skip; keeps the last *processed* frame as reference."""

    def __init__(self, threshold: float = 0.98, max_skip: int = 10, seed: int = 0) -> None:
        self.threshold = threshold
        self.max_skip = max_skip
        self._rng = random.Random(seed)
        self._reference: torch.Tensor | None = None
        self._consecutive = 0
        self.skipped = 0
        self.processed = 0

    def reset(self) -> None:
        """Forget the reference, e.g. after the output stopped being comparable (new size)."""
        self._reference = None
        self._consecutive = 0

    def should_skip(self, frame: torch.Tensor) -> bool:
        """True to skip ``frame``; False means it will be processed and becomes the reference."""
        if self._reference is not None and self._reference.shape == frame.shape:
            p = skip_probability(cosine_similarity(self._reference, frame), self.threshold)
            if p > 0.0 and self._rng.random() < p and self._consecutive < self.max_skip:
                self._consecutive += 1
                self.skipped += 1
                return True
        self._reference = frame.detach().clone()
        self._consecutive = 0
        self.processed += 1
        return False
