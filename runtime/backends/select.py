"""Backend choice: the one place ``--backend`` names become objects."""

from __future__ import annotations

from runtime.backends.base import Backend
from runtime.models import ModelParts

BACKENDS = ("torch",)


def default_backend() -> str:
    return "torch"


def make_backend(name: str, parts: ModelParts, **options) -> Backend:
    if name == "auto":
        name = default_backend()
    if name == "torch":
        from runtime.backends.torch_eager import TorchBackend

        return TorchBackend(parts)
    raise ValueError(f"unknown backend {name!r}; expected one of: auto, {', '.join(BACKENDS)}")
