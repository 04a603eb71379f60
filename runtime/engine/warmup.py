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
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dreamwire.control.schema import MAX_STEPS
from dreamwire.engine.stream import StreamEngine


def warm_up(engine: StreamEngine, progress: Callable[[int, int], None] | None = None,
            max_steps: int = MAX_STEPS) -> None:
    """Exercise every step count 1..``max_steps`` at the engine's configured resolution and batch."""
    cfg = engine.config
    images = None
    if cfg.mode == "img2img":
        images = torch.zeros(cfg.frames, 3, cfg.height, cfg.width, device=engine.device, dtype=engine.dtype)
    for n in range(1, max_steps + 1):
        params = engine.params.replace(steps=n, t_index_list=(), similarity_filter=False)
        probe = StreamEngine(engine.backend, engine.prompts, engine.model, cfg, params)
        probe.step(images)  # priming (n-1 calls of f rows) + the first stream call (n*f rows)
        probe.step(images)  # a steady-state stream call
        if cfg.guidance == "onetime":
            probe.guidance.negative_changed()
            probe.step(images)  # the one-off refresh on every row (2*n*f)
        if progress is not None:
            progress(n, max_steps)
