"""Which CUDA build of TensorRT fits this torch: checked before ``import tensorrt``, with the pip command.

NVIDIA ships TensorRT per CUDA major: ``tensorrt-cu12`` and ``tensorrt-cu13`` (each pulling
``tensorrt_cuXX_libs`` and ``tensorrt_cuXX_bindings``). The bare ``tensorrt`` meta-package picks
one for you, and since 10.13 that is cu13 (``tensorrt`` 11.4.0.106 and 10.16.1.11 both require
``tensorrt_cu13``): CUDA 13 libraries, which need driver R580+, beside a torch that may be
built for CUDA 12.x. Two CUDA runtimes in one process is at best a confusing ``OSError`` at
import and at worst a crash at the first engine, so the flavour must match
``torch.version.cuda``'s major. Installing both flavours is refused as well: both ship the
same ``tensorrt_libs`` / ``tensorrt_bindings`` modules, so whichever was installed last wins.

The installed flavours are read from the distribution names (``importlib.metadata``), which
works before anything native is loaded. A TensorRT installed without wheels (NVIDIA's tar
or a system package) has no such names and is left to the import to judge.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable

from dreamwire.backends.errors import BackendUnavailable

_WHEEL = re.compile(r"tensorrt[-_.]cu(\d+)(?:[-_.](?:libs|bindings))?")


def installed_distributions() -> list[str]:
    return [d.metadata["Name"] or "" for d in importlib.metadata.distributions()]


def flavours(names: Iterable[str]) -> dict[int, list[str]]:
    """CUDA major -> the installed TensorRT distributions built for it (``tensorrt-cu12``, ``tensorrt_cu12_libs``)."""
    out: dict[int, list[str]] = {}
    for name in names:
        m = _WHEEL.fullmatch(name.lower())
        if m:
            out.setdefault(int(m.group(1)), []).append(name)
    return {k: sorted(v) for k, v in sorted(out.items())}


def install_command(torch_cuda: str | int | None) -> str:
    """The pip command that installs the TensorRT matching CUDA ``torch_cuda`` (a major or ``torch.version.cuda``)."""
    if torch_cuda is None:
        return "pip install 'dreamwire[tensorrt-cu12]' (or [tensorrt-cu13], the CUDA major of your torch)"
    return f"pip install 'dreamwire[tensorrt-cu{str(torch_cuda).split('.')[0]}]'"


def mismatch(torch_cuda: str | None, installed: Iterable[str]) -> str | None:
    """Why the installed TensorRT wheels do not fit a torch built for CUDA ``torch_cuda`` (``None``: they do).

    ``torch_cuda`` is ``torch.version.cuda`` (``None`` for a CPU or ROCm torch: the device check says
    that TensorRT needs CUDA, nothing to compare here).
    """
    if not torch_cuda:
        return None
    want = int(torch_cuda.split(".")[0])
    have = flavours(installed)
    if not have or set(have) == {want}:
        return None
    wrong = [n for major, names in have.items() if major != want for n in names]
    fix = f"pip uninstall -y {' '.join(wrong)} && {install_command(want)}"
    if want in have:
        return (f"TensorRT is installed for CUDA {' and '.join(str(m) for m in have)} at once (one shadows the "
                f"other); torch is built for CUDA {torch_cuda}. Fix: {fix}")
    return (f"TensorRT is installed for CUDA {', '.join(str(m) for m in have)} but torch is built for CUDA "
            f"{torch_cuda}. Fix: {fix}")


def check(torch_cuda: str | None, installed: Iterable[str] | None = None) -> None:
    """Raise :class:`BackendUnavailable` with the exact pip command when the flavours do not fit."""
    why = mismatch(torch_cuda, installed_distributions() if installed is None else installed)
    if why is not None:
        raise BackendUnavailable(f"backend 'tensorrt': {why}")
