"""ControlNet math the stream engine needs: per-row scales from the live values, and the residual sum.

A stream-batch call holds rows at different steps (row r of a call is at step
``r // f``), so each row gets its own scale: ``scale x enabled x keep(step)``,
where ``keep`` is diffusers' ``controlnet_keep`` rule for the step's place in
the schedule, ``not (i/n < start or (i+1)/n > end)``
(StableDiffusionControlNetImg2ImgPipeline). One ControlNet call at scale 1 and a
(B,1,1,1) multiply then give exactly what the pipeline computes with
``conditioning_scale = scale * keep``, for every row at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dreamwire.engine.api import PREPROCESSORS

__all__ = ["ControlNetSetup", "ControlValues", "keep", "live_values", "row_scales"]


@dataclass(frozen=True)
class ControlNetSetup:
    """What the engine knows of one loaded ControlNet: its control-image preprocessor and default scale."""

    preprocessor: str = "canny"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.preprocessor not in PREPROCESSORS:
            raise ValueError(f"unknown control preprocessor {self.preprocessor!r}; expected one of "
                             f"{', '.join(PREPROCESSORS)}")


@dataclass(frozen=True)
class ControlValues:
    """One ControlNet's live values (the per-ControlNet entries of the control lists, or their defaults)."""

    scale: float
    enabled: bool = True
    start: float = 0.0
    end: float = 1.0


def keep(step: int, steps: int, start: float, end: float) -> bool:
    """Whether a ControlNet acts at ``step`` of ``steps`` (diffusers' ``controlnet_keep`` rule)."""
    return not (step / steps < start or (step + 1) / steps > end)


def row_scales(v: ControlValues, row_steps: Sequence[int], steps: int) -> list[float]:
    """The residual scale of each row of a call, given the step each row is at."""
    if not v.enabled or v.scale == 0.0:
        return [0.0] * len(row_steps)
    return [v.scale if keep(i, steps, v.start, v.end) else 0.0 for i in row_steps]


def live_values(setups: Sequence[ControlNetSetup], scale: Sequence[float], enabled: Sequence[bool],
                start: Sequence[float], end: Sequence[float]) -> list[ControlValues]:
    """Per-ControlNet values from the control lists: an empty list means every ControlNet's default."""
    n = len(setups)
    return [ControlValues(scale=scale[k] if scale else setups[k].scale, enabled=enabled[k] if enabled else True,
                          start=start[k] if start else 0.0, end=end[k] if end else 1.0) for k in range(n)]


def check_lengths(count: int, lists: dict[str, Sequence]) -> str | None:
    """A message naming the first non-empty control list whose length isn't one per loaded ControlNet."""
    for name, value in lists.items():
        if value and len(value) != count:
            return (f"{name}: {len(value)} values, but {count} ControlNet(s) are loaded; give one per ControlNet "
                    f"(or none for the defaults)")
    return None
