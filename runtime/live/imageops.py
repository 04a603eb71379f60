"""The one place pixels change format: uint8 frames <-> the engine's [-1, 1] NCHW tensors.

Both directions run on the engine's device, so a frame crosses to the host
(at most) once each way, at the bridge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dreamwire.bridges.base import LAYOUTS


def _rgb_order(layout: str) -> list[int]:
    if layout not in LAYOUTS:
        raise ValueError(f"unsupported pixel layout {layout!r}; expected one of {LAYOUTS}")
    return [2, 1, 0] if layout.startswith("BGR") else [0, 1, 2]


def to_model_input(frame: torch.Tensor, layout: str, size: tuple[int, int],
                   device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """(H,W,C) or (N,H,W,C) uint8 in ``layout`` -> (N,3,height,width) in [-1, 1] on ``device``.

    ``size`` is (height, width). Alpha is dropped; resizing is bilinear with
    antialiasing so downscaled feeds don't alias.
    """
    if frame.dtype != torch.uint8:
        raise ValueError(f"expected uint8 pixels, got {frame.dtype}")
    x = frame if frame.dim() == 4 else frame.unsqueeze(0)
    if x.shape[-1] != len(layout):
        raise ValueError(f"layout {layout} needs {len(layout)} channels, frame has {x.shape[-1]}")
    x = x.to(device, non_blocking=True)[..., _rgb_order(layout)].permute(0, 3, 1, 2).to(dtype)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor, layout: str = "RGB", size: tuple[int, int] | None = None) -> torch.Tensor:
    """(N,3,H,W) in [-1, 1] -> (N,H',W',C) uint8 in ``layout``, still on the images' device.

    ``size`` (height, width) resizes back, e.g. to the input frame's size.
    """
    x = images.float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)[:, _rgb_order(layout)]
    x = x.permute(0, 2, 3, 1)
    if layout.endswith("A"):
        alpha = torch.full((*x.shape[:-1], 1), 255, dtype=torch.uint8, device=x.device)
        x = torch.cat([x, alpha], dim=-1)
    return x.contiguous()
