"""Warm-up: run every shape a live parameter can reach through the backend before the show starts.

Backends that compile or capture CUDA graphs do it once per input shape, on
first use, and that stops frames for seconds. A live ``steps`` change (1..8)
changes the UNet batch, and onetime RCFG's negative refresh doubles it, so
without this a performer's first step change would stall the output. Warm-up
drives a throwaway engine per step count, sharing the live engine's backend
(where compiled kernels and graphs live) and prompt cache, through priming,
one stream call and, for onetime RCFG, the refresh call: exactly the calls
the live engine will make. Resolution and frames per call are fixed by the
:class:`EngineConfig`, so these are all the shapes there are.

With ControlNets every one is switched on for every row while warming: a
ControlNet graph is called only while that ControlNet is on somewhere, and it
sees the UNet call's shape, so all-on reaches every ControlNet's graph at every
shape. The UNet always takes residuals (zeros when all are off), so each
on/off combination a performer can reach is then already captured. The step
counts go up to the backend's ``max_steps`` where it has one (TensorRT's
batch profile), else to the schema's maximum.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dreamwire.control.schema import MAX_STEPS
from dreamwire.engine.stream import StreamEngine


def warm_up(engine: StreamEngine, progress: Callable[[int, int], None] | None = None,
            max_steps: int | None = None) -> None:
    """Exercise every step count 1..``max_steps`` at the engine's configured resolution and batch."""
    cfg = engine.config
    max_steps = max_steps or getattr(engine.backend, "max_steps", MAX_STEPS)
    images = None
    if cfg.mode == "img2img":
        images = torch.zeros(cfg.frames, 3, cfg.height, cfg.width, device=engine.device, dtype=engine.dtype)
    k = len(engine.controlnets)
    all_on = {"controlnet_enabled": (True,) * k, "controlnet_scale": (1.0,) * k,
              "controlnet_start": (0.0,) * k, "controlnet_end": (1.0,) * k} if k else {}
    control = [torch.zeros(cfg.frames, 3, cfg.height, cfg.width, device=engine.device, dtype=engine.dtype)] * k
    for n in range(1, max_steps + 1):
        params = engine.params.replace(steps=n, t_index_list=(), similarity_filter=False, **all_on)
        probe = StreamEngine(engine.backend, engine.prompts, engine.model, cfg, params,
                             controlnets=engine.controlnets)
        probe.step(images, controlnet_images=control or None)  # priming (n-1 calls of f rows) + the first stream call
        probe.step(images, controlnet_images=control or None)  # a steady-state stream call
        if cfg.guidance == "onetime":
            probe.guidance.negative_changed()
            probe.step(images, controlnet_images=control or None)  # the one-off refresh on every row (2*n*f)
        if progress is not None:
            progress(n, max_steps)
