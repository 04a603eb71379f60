"""Engine stand-ins for the frame loop: the Engine protocol with controllable cost, delay and failures."""

from __future__ import annotations

import time

import torch

from dreamwire.engine.api import EngineConfig, StepResult


class FakeEngine:
    """The engine interface with controllable cost, delay and failures; output = input (in [-1, 1])."""

    def __init__(self, size: int = 64, delay: int = 1, cost: float = 0.0, fail_every: int = 0,
                 fail_at: tuple[int, ...] = ()) -> None:
        self.config = EngineConfig(width=size, height=size)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.delay = delay
        self.cost = cost
        self.fail_every = fail_every
        self.fail_at = fail_at
        self.steps = 0
        self.updates: list = []
        self.params = None
        self._history: list = []  # inputs of each call, newest last: the real engine's sources contract

    def update(self, params) -> set[str]:
        self.params = params
        self.updates.append(params)
        return set()

    def reset(self) -> None:
        self.resets = getattr(self, "resets", 0) + 1

    def step(self, images: torch.Tensor, sources=None) -> StepResult:
        self.steps += 1
        if (self.fail_every and self.steps % self.fail_every == 0) or self.steps in self.fail_at:
            raise RuntimeError("simulated engine failure")
        if self.cost:
            time.sleep(self.cost)
        self._history.append(tuple(sources))
        made_from = self._history[max(0, len(self._history) - 1 - self.delay)]
        return StepResult(images, skipped=False, delay=self.delay, sources=made_from)


class InputRecordingEngine(FakeEngine):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.inputs: list[torch.Tensor] = []

    def step(self, images, sources=None):
        self.inputs.append(images.clone())
        return super().step(images, sources)
