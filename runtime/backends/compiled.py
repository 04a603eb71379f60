"""torch.compile backend; on CUDA each compiled network also runs as captured CUDA graphs.

Compiled with a **dynamic batch dimension**: the UNet batch follows the step
count (1..8, times frames, doubled for full CFG), and a static-shape compile per
batch would cost tens of seconds each on a GPU (~90 s on CPU), too much to warm
every step count before a show. Marking dim 0 dynamic gives one Inductor graph
for every batch >= 2 plus one for batch 1 (dynamo specialises sizes 0 and 1;
torch.compiler docs, "dynamic shapes": 0/1 specialization), so warming steps
1..8 costs two compiles per network; CUDA graphs are then captured per shape,
which is cheap. Height and width stay static (a resolution change restarts).

``captures`` counts both: every Inductor compile (through a counting backend
around ``torch._dynamo.lookup_backend("inductor")``, the same compiler
``torch.compile(backend="inductor")`` runs in its default mode) plus every graph
capture. The wrapped modules are the ones the ONNX export traces, so the math
is identical to the torch backend.

**Dynamo's recompile limit** (``torch._dynamo.config.recompile_limit``, named
``cache_size_limit`` before torch 2.6; default 8) is process-wide: past it dynamo
silently falls back to eager for that frame. Resolutions x (batch 1, batch >= 2)
can pass 8, so this backend raises it, but only *while its own compiled networks
run* (:func:`recompile_limit`, through ``config.patch``, restored on exit), never as
a side effect of construction that other ``torch.compile`` users in the process
would inherit. The limit is the ``recompile_limit=`` constructor option.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from dreamwire.backends.torch_eager import TorchBackend
from dreamwire.models.parts import ModelParts

RECOMPILE_LIMIT = 64  # distinct specialisations: resolutions x (batch 1, batch >= 2), with room to spare


@contextlib.contextmanager
def recompile_limit(limit: int) -> Iterator[None]:
    """Dynamo's recompile limit at least ``limit`` inside the block, the caller's value again after it.

    ``config.patch`` (torch/utils/_config_module.py, ``ConfigModule.patch``) restores on exit, also on error.
    The setting is global while the block runs: a compile in another thread during it sees it too.
    """
    import torch._dynamo

    cfg = torch._dynamo.config
    attr = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    with cfg.patch(**{attr: max(getattr(cfg, attr), limit)}):
        yield


class LimitedCompile:
    """Calls a compiled ``fn`` under :func:`recompile_limit`; optionally with dim 0 marked dynamic.

    ``dynamic_batch``: dim 0 of every input with batch > 1 is marked dynamic (batch 1 stays a
    specialisation of its own).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], limit: int, *, dynamic_batch: bool = True) -> None:
        self.fn, self.limit, self.dynamic_batch = fn, limit, dynamic_batch

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        import torch._dynamo

        if self.dynamic_batch:
            for a in args:
                if a.dim() and a.shape[0] > 1:
                    # maybe_: a model needing a fixed batch recompiles instead of failing (torch/_dynamo/decorators.py)
                    torch._dynamo.maybe_mark_dynamic(a, 0)
        with recompile_limit(self.limit):
            return self.fn(*args)


class CompiledBackend(TorchBackend):
    name = "compile"
    graphs_name = "compile"

    def __init__(self, parts: ModelParts, *, cuda_graphs: bool | None = None, fullgraph: bool = False,
                 dynamic_batch: bool = True, recompile_limit: int = RECOMPILE_LIMIT) -> None:
        self.compiles = 0
        self._fullgraph = fullgraph
        self._dynamic_batch = dynamic_batch
        self.recompile_limit = recompile_limit  # applied only while these networks run (module docstring)
        on_cuda = parts.unet.device.type == "cuda"
        super().__init__(parts, cuda_graphs=on_cuda if cuda_graphs is None else cuda_graphs)

    def _prepare(self, module: nn.Module) -> Callable[..., torch.Tensor]:
        # "reduce-overhead" would add torch's own CUDA graphs on top of ours; keep one mechanism.
        fn = torch.compile(module, backend=self._inductor, dynamic=False, fullgraph=self._fullgraph)
        return LimitedCompile(fn, self.recompile_limit, dynamic_batch=self._dynamic_batch)

    def _inductor(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable:
        """Inductor in its default mode, counted: dynamo calls this once per graph it compiles."""
        import torch._dynamo

        self.compiles += 1
        return torch._dynamo.lookup_backend("inductor")(gm, example_inputs)

    @property
    def captures(self) -> int:
        return self.compiles + super().captures
