"""A clock that moves only when a test moves it, for the rig, morphs, quantize and scenes."""

from __future__ import annotations


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
