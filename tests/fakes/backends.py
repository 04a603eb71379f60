"""Backend wrappers for tests: each wraps a real backend and records or breaks what passes through it."""

from __future__ import annotations

import torch


class CountingBackend:
    """Records every call, so tests can see batch sizes and skipped work."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = "counting"
        self.device = inner.device
        self.dtype = inner.dtype
        self.unet_batches: list[int] = []
        self.unet_samples: list[torch.Tensor] = []
        self.encodes = 0
        self.decodes = 0

    def unet(self, sample, timestep, encoder_hidden_states):
        self.unet_batches.append(sample.shape[0])
        self.unet_samples.append(sample.clone())
        return self.inner.unet(sample, timestep, encoder_hidden_states)

    def encode(self, images):
        self.encodes += 1
        return self.inner.encode(images)

    def decode(self, latents):
        self.decodes += 1
        return self.inner.decode(latents)


class ShapeCounting:
    """'Captures' once per new call shape of each network, as CUDA graphs or compiled kernels would."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.device, self.dtype = inner, "capturing", inner.device, inner.dtype
        self.shapes: set[tuple] = set()
        self.controlnet_calls = 0

    @property
    def captures(self) -> int:
        return len(self.shapes)

    def _seen(self, *key) -> None:
        self.shapes.add(tuple(tuple(k.shape) if isinstance(k, torch.Tensor) else k for k in key))

    def unet(self, sample, timestep, hidden, **kw):
        self._seen("unet", sample, hidden)
        return self.inner.unet(sample, timestep, hidden, **kw)

    def controlnet(self, index, sample, timestep, hidden, image, **kw):
        self.controlnet_calls += 1
        self._seen("controlnet", index, sample)
        return self.inner.controlnet(index, sample, timestep, hidden, image, **kw)

    def encode(self, images):
        self._seen("encode", images)
        return self.inner.encode(images)

    def decode(self, latents):
        self._seen("decode", latents)
        return self.inner.decode(latents)


class FlakyBackend:
    """Raises (or returns NaN) on chosen UNet calls."""

    def __init__(self, inner, *, raise_every: int = 0, nan_calls: tuple[int, ...] = (), always_fail: bool = False,
                 name: str = "flaky") -> None:
        self.inner, self.name, self.device, self.dtype = inner, name, inner.device, inner.dtype
        self.raise_every, self.nan_calls, self.always_fail = raise_every, nan_calls, always_fail
        self.calls = 0
        self.raised = 0

    def unet(self, sample, timestep, cond):
        self.calls += 1
        if self.always_fail or (self.raise_every and self.calls % self.raise_every == 0):
            self.raised += 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        out = self.inner.unet(sample, timestep, cond)
        return out * float("nan") if self.calls in self.nan_calls else out

    def encode(self, images):
        return self.inner.encode(images)

    def decode(self, latents):
        return self.inner.decode(latents)
