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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dreamwire.backends.torch_eager import TorchBackend
from dreamwire.models.parts import ModelParts

RECOMPILE_LIMIT = 64  # distinct specialisations: resolutions x (batch 1, batch >= 2), with room to spare


class DynamicBatch:
    """Calls ``fn`` with dim 0 of every input marked dynamic (batch 1 stays a specialisation of its own)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        import torch._dynamo

        for a in args:
            if a.dim() and a.shape[0] > 1:
                # maybe_: a model that needs a fixed batch recompiles instead of failing (torch/_dynamo/decorators.py)
                torch._dynamo.maybe_mark_dynamic(a, 0)
        return self.fn(*args)


class CompiledBackend(TorchBackend):
    name = "compile"
    graphs_name = "compile"

    def __init__(self, parts: ModelParts, *, cuda_graphs: bool | None = None, fullgraph: bool = False,
                 dynamic_batch: bool = True) -> None:
        import torch._dynamo

        self.compiles = 0
        self._fullgraph = fullgraph
        self._dynamic_batch = dynamic_batch
        cfg = torch._dynamo.config
        attr = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, attr, max(getattr(cfg, attr), RECOMPILE_LIMIT))
        on_cuda = parts.unet.device.type == "cuda"
        super().__init__(parts, cuda_graphs=on_cuda if cuda_graphs is None else cuda_graphs)

    def _prepare(self, module: nn.Module) -> Callable[..., torch.Tensor]:
        # "reduce-overhead" would add torch's own CUDA graphs on top of ours; keep one mechanism.
        fn = torch.compile(module, backend=self._inductor, dynamic=False, fullgraph=self._fullgraph)
        return DynamicBatch(fn) if self._dynamic_batch else fn

    def _inductor(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable:
        """Inductor in its default mode, counted: dynamo calls this once per graph it compiles."""
        import torch._dynamo

        self.compiles += 1
        return torch._dynamo.lookup_backend("inductor")(gm, example_inputs)

    @property
    def captures(self) -> int:
        return self.compiles + super().captures
