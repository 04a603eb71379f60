"""torch.compile backend; on CUDA each compiled network also runs as captured CUDA graphs.

Compiled with static shapes (``dynamic=False``): the engine's shapes are few
(one per step count and resolution) and static kernels are the fastest. The
first call per shape compiles (tens of seconds on GPU, ~90 s on CPU) and, on
CUDA, captures a graph; later calls only copy inputs and replay. The wrapped
modules are the same ones the ONNX export traces, so the math is identical to
the torch backend (the timestep is passed as float32, which is exact).
"""

from __future__ import annotations

import torch

from dreamwire.backends.cudagraph import CudaGraphRunner
from dreamwire.backends.graphs import DecoderGraph, EncoderGraph, UNetGraph
from dreamwire.models.parts import ModelParts

RECOMPILE_LIMIT = 64  # distinct shapes: batch per step count x resolutions, all legitimately static


class CompiledBackend:
    name = "compile"

    def __init__(self, parts: ModelParts, *, cuda_graphs: bool | None = None, mode: str | None = None,
                 fullgraph: bool = False) -> None:
        self.device = parts.unet.device
        self.dtype = parts.unet.dtype
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if use_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        self.cuda_graphs = use_graphs
        import torch._dynamo

        cfg = torch._dynamo.config
        attr = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, attr, max(getattr(cfg, attr), RECOMPILE_LIMIT))
        modules = {
            "unet": UNetGraph(parts.unet),
            "encoder": EncoderGraph(parts.vae, parts.spec.vae_scaling_factor),
            "decoder": DecoderGraph(parts.vae, parts.spec.vae_scaling_factor),
        }
        # "reduce-overhead" would add torch's own CUDA graphs on top of ours; keep one mechanism.
        compile_mode = mode or "default"  # max-autotune would add many minutes of tuning per shape
        self._fns = {}
        for name, module in modules.items():
            fn = torch.compile(module.eval(), mode=compile_mode, dynamic=False, fullgraph=fullgraph)
            self._fns[name] = CudaGraphRunner(fn) if use_graphs else fn

    @torch.inference_mode()
    def unet(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
             ) -> torch.Tensor:
        t = timestep.to(device=self.device, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        return self._fns["unet"](sample.to(self.dtype), t.contiguous(), encoder_hidden_states.to(self.dtype))

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._fns["encoder"](images.to(self.dtype))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._fns["decoder"](latents.to(self.dtype))
