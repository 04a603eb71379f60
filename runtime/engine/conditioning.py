"""Conditioning: what one prompt gives a UNet row, for every model kind, batched the same way.

SD 1.5/2.1 need only the text encoder's hidden states; SDXL adds a pooled
text embedding and ``time_ids`` (diffusers' ``added_cond_kwargs``). Guidance
strategies stack conditionings row by row without knowing which kind they
hold, so SDXL runs every guidance mode with no branch of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch


def _frozen(d: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Conditioning:
    """``hidden`` is (B, tokens, dim); each ``added`` tensor is (B, ...) with the same B (usually 1).

    B = 1 for one prompt; :meth:`rows` broadcasts it to a batch without copying.
    """

    hidden: torch.Tensor
    added: Mapping[str, torch.Tensor] = field(default_factory=lambda: _frozen({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "added", _frozen(self.added))
        for k, v in self.added.items():
            if v.shape[0] != self.hidden.shape[0]:
                raise ValueError(f"added conditioning {k!r} has {v.shape[0]} rows, "
                                 f"hidden states {self.hidden.shape[0]}")

    def rows(self, n: int) -> Conditioning:
        """This (single-row) conditioning for ``n`` rows, as broadcast views."""
        return Conditioning(self.hidden.expand(n, *self.hidden.shape[1:]),
                            {k: v.expand(n, *v.shape[1:]) for k, v in self.added.items()})

    def to(self, **kwargs) -> Conditioning:
        return Conditioning(self.hidden.to(**kwargs), {k: v.to(**kwargs) for k, v in self.added.items()})

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Row-wise concatenation; every part must carry the same added keys."""
        keys = set(parts[0].added)
        if any(set(p.added) != keys for p in parts):
            raise ValueError("cannot stack conditionings with different added keys")
        return Conditioning(torch.cat([p.hidden for p in parts]),
                            {k: torch.cat([p.added[k] for p in parts]) for k in sorted(keys)})

    @staticmethod
    def blend(parts: Sequence[Conditioning], weights: Sequence[float]) -> Conditioning:
        """Weighted mean of every tensor (weights normalised to sum 1): prompt blending for any kind."""
        if len(parts) != len(weights) or not parts:
            raise ValueError("need one weight per conditioning, and at least one")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("weights must not all be zero")
        w = [float(x) / total for x in weights]

        def mix(ts: Sequence[torch.Tensor]) -> torch.Tensor:
            out = torch.zeros_like(ts[0])
            for t, wi in zip(ts, w):
                out = out + t * wi
            return out

        keys = set(parts[0].added)
        if any(set(p.added) != keys for p in parts):
            raise ValueError("cannot blend conditionings with different added keys")
        return Conditioning(mix([p.hidden for p in parts]), {k: mix([p.added[k] for p in parts]) for k in keys})
