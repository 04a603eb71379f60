"""Control-image preprocessors: input frame -> ControlNet conditioning image, on the engine's device.

Pure torch, so they run where the frame already is and cost no download:
``canny`` (Sobel gradients, non-maximum suppression along the gradient
direction, hysteresis between two thresholds), ``softedge`` (the normalised
Sobel magnitude) and ``passthrough`` (the frame itself, e.g. a depth map a
TouchDesigner network already rendered). Inputs are (B,3,H,W) in [-1, 1];
outputs (B,3,H,W) in [0, 1], the range diffusers' ControlNet pipelines feed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dreamwire.engine.api import PREPROCESSORS

CANNY_LOW, CANNY_HIGH = 0.1, 0.2  # fractions of the largest possible Sobel magnitude of a [0, 1] image


def _gray(images: torch.Tensor) -> torch.Tensor:
    rgb = (images.float().clamp(-1, 1) + 1) / 2
    w = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


def sobel(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel gradients of (B,1,H,W), edges replicated."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=gray.device)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k)
    return g[:, :1], g[:, 1:]


def non_max_suppression(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """``mag`` where it is a maximum along the gradient direction (quantised to 4 directions), else 0."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180
    sector = (((angle + 22.5) // 45) % 4).long()  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
    p = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    offsets = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, (a, b) in enumerate(offsets):
        keep |= (sector == s) & (mag >= at(*a)) & (mag >= at(*b))
    return mag * keep


def hysteresis(strong: torch.Tensor, weak: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
    """Weak edge pixels connected (8-neighbourhood) to strong ones, grown by repeated 3x3 dilation."""
    edges = strong.float()
    weak = (weak | strong).float()
    for _ in range(iterations or max(strong.shape[-2:])):
        grown = F.max_pool2d(edges, 3, stride=1, padding=1) * weak
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def canny(images: torch.Tensor, low: float = CANNY_LOW, high: float = CANNY_HIGH,
          iterations: int | None = 16) -> torch.Tensor:
    """Canny edges as a white-on-black RGB image; ``iterations`` bounds the hysteresis growth per frame."""
    gx, gy = sobel(_gray(images))
    mag = torch.sqrt(gx * gx + gy * gy) / 4.0  # 4 = the Sobel magnitude of a 0 -> 1 step edge
    thin = non_max_suppression(mag, gx, gy)
    edges = hysteresis(thin >= high, thin >= low, iterations)
    return edges.expand(-1, 3, -1, -1).to(images.dtype)


def softedge(images: torch.Tensor) -> torch.Tensor:
    """Sobel magnitude scaled to [0, 1] per image: soft, thick edges without a model."""
    gx, gy = sobel(_gray(images))
    mag = torch.sqrt(gx * gx + gy * gy)
    mag = mag / mag.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    return mag.expand(-1, 3, -1, -1).to(images.dtype)


def passthrough(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) / 2).to(images.dtype)


def make_preprocessor(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    table = {"canny": canny, "softedge": softedge, "passthrough": passthrough}
    if name not in table:
        raise ValueError(f"unknown control preprocessor {name!r}; expected one of {', '.join(PREPROCESSORS)}")
    return table[name]
