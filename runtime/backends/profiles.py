"""Resolution and batch profiles: the shape ranges one exported graph or engine must serve.

One ONNX export has dynamic batch/height/width axes, and one TensorRT engine is
built for a *range* of shapes (min/opt/max), so changing the output resolution
inside the range, or the number of steps n, never triggers a rebuild. All of
this is pure arithmetic so it is tested without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamwire.control.schema import MAX_STEPS
from dreamwire.engine.api import GUIDANCE_MODES
from dreamwire.engine.guidance import make_guidance

LATENT_ALIGN = 64  # pixels: SD's 3 downsamples x VAE factor 8 need multiples of 64


@dataclass(frozen=True)
class ResolutionProfile:
    """Square-bounded pixel range for both sides: ``minimum..maximum`` in steps of ``step``.

    ``opt`` is the resolution TensorRT tunes its kernels for (the one you run).
    """

    minimum: int = 256
    maximum: int = 1024
    step: int = LATENT_ALIGN
    opt: int = 512

    def __post_init__(self) -> None:
        if self.step <= 0 or self.step % 8:
            raise ValueError(f"profile step {self.step} must be a positive multiple of 8")
        if self.minimum % self.step or self.maximum % self.step:
            raise ValueError(f"profile bounds {self.minimum}..{self.maximum} must be multiples of {self.step}")
        if not 0 < self.minimum <= self.opt <= self.maximum:
            raise ValueError(f"profile needs 0 < min <= opt <= max, got {self.minimum}/{self.opt}/{self.maximum}")

    def contains(self, width: int, height: int) -> bool:
        return all(self.minimum <= s <= self.maximum and s % self.step == 0 for s in (width, height))

    def check(self, width: int, height: int) -> None:
        """Raise with the fix when a resolution falls outside the profile."""
        if not self.contains(width, height):
            raise ValueError(
                f"resolution {width}x{height} is outside the engine profile {self.label()}: both sides must be "
                f"multiples of {self.step} in {self.minimum}..{self.maximum}; rebuild with a wider --profile")

    def sizes(self) -> list[int]:
        return list(range(self.minimum, self.maximum + 1, self.step))

    def label(self) -> str:
        return f"{self.minimum}-{self.maximum}/{self.step}@{self.opt}"

    @classmethod
    def around(cls, width: int, height: int, minimum: int = 256, maximum: int = 1024,
               step: int = LATENT_ALIGN) -> ResolutionProfile:
        """The default dynamic profile widened, if needed, to hold ``width`` x ``height``."""
        lo = min(minimum, _floor(min(width, height), step))
        hi = max(maximum, _ceil(max(width, height), step))
        opt = min(max(_ceil(max(width, height), step), lo), hi)
        return cls(minimum=max(lo, step), maximum=hi, step=step, opt=opt)

    @classmethod
    def parse(cls, text: str, opt: int | None = None) -> ResolutionProfile:
        """``"256-1024"`` (step 64), ``"256-1024/32"``, or one size ``"512"`` (a static profile)."""
        body, _, step_text = text.strip().partition("/")
        lo, _, hi = body.partition("-")
        minimum, maximum = int(lo), int(hi or lo)
        step = int(step_text) if step_text else (LATENT_ALIGN if maximum > minimum else minimum)
        o = opt if opt is not None else min(max(512, minimum), maximum)
        return cls(minimum=minimum, maximum=maximum, step=step, opt=_clamp_to_grid(o, minimum, maximum, step))


def _floor(x: int, step: int) -> int:
    return x // step * step


def _ceil(x: int, step: int) -> int:
    return -(-x // step) * step


def _clamp_to_grid(x: int, lo: int, hi: int, step: int) -> int:
    return min(max(_floor(x, step), lo), hi)


def unet_batch(steps: int, frames: int, guidance: str) -> int:
    """UNet rows in one stream call, as the guidance strategy itself counts them:
    n*f (none/self), 2*n*f (full), n*f + 1 (onetime)."""
    if guidance not in GUIDANCE_MODES:
        raise ValueError(f"unknown guidance mode {guidance!r}")
    return make_guidance(guidance).batch_size(steps * frames, frames)


@dataclass(frozen=True)
class BatchProfile:
    """UNet batch range for a frames/guidance pair over every step count 1..max_steps.

    The smallest call is a priming/sequential step (batch f, or 2f for full
    CFG); the largest is the stream call at ``max_steps``. ``opt`` is the
    stream batch at the configured step count.
    """

    frames: int = 1
    guidance: str = "self"
    steps: int = 2
    max_steps: int = MAX_STEPS

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= self.max_steps:
            raise ValueError(f"steps {self.steps} outside 1..{self.max_steps}")
        unet_batch(1, self.frames, self.guidance)  # validates frames/guidance

    @property
    def minimum(self) -> int:
        return unet_batch(1, self.frames, "full" if self.guidance == "full" else "none")

    @property
    def opt(self) -> int:
        return unet_batch(self.steps, self.frames, self.guidance)

    @property
    def maximum(self) -> int:
        if self.guidance == "onetime":
            # After a negative-prompt change, onetime runs the negative on every row once (2*n*f).
            return 2 * self.max_steps * self.frames
        return unet_batch(self.max_steps, self.frames, self.guidance)

    def label(self) -> str:
        return f"f{self.frames}-{self.guidance}-b{self.minimum}-{self.opt}-{self.maximum}"
