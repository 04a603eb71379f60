"""Tensor names and dynamic axes of every exported graph, shared by the ONNX and TensorRT runners.

The three fixed graphs (UNet, VAE encoder, VAE decoder) are constants. The two ControlNet graphs
(``controlnet``: residuals out, ``unet_residual``: the UNet with residuals in) have as many residual
tensors as the UNet has down-block outputs plus one mid, so their I/O is built for a residual count
(:func:`graph_io`). Every residual has a dynamic batch and its own dynamic height and width: the
down blocks halve the latent size with rounding up, which one pair of symbols cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROLNET = "controlnet"
RESIDUAL_UNET = "unet_residual"


@dataclass(frozen=True)
class GraphIO:
    """Tensor names of one exported graph, shared by the ONNX and TensorRT runners."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


_LATENT = {0: "batch", 2: "latent_height", 3: "latent_width"}
_UNET_IN = {"sample": _LATENT, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}}

GRAPH_IO: dict[str, GraphIO] = {
    "unet": GraphIO(
        inputs=("sample", "timestep", "encoder_hidden_states"),
        outputs=("model_output",),
        dynamic_axes={**_UNET_IN, "model_output": _LATENT},
    ),
    "unet_sdxl": GraphIO(  # SDXL: the added conditioning as two more inputs, batched per row
        inputs=("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"),
        outputs=("model_output",),
        dynamic_axes={**_UNET_IN, "text_embeds": {0: "batch"}, "time_ids": {0: "batch"}, "model_output": _LATENT},
    ),
    "encoder": GraphIO(
        inputs=("images",),
        outputs=("latents",),
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "latents": _LATENT},
    ),
    "decoder": GraphIO(
        inputs=("latents",),
        outputs=("images",),
        dynamic_axes={"latents": _LATENT, "images": {0: "batch", 2: "height", 3: "width"}},
    ),
}


def residual_names(count: int) -> tuple[str, ...]:
    """``count`` residual tensor names: the down residuals in UNet order, then the mid residual."""
    if count < 2:
        raise ValueError(f"a ControlNet gives at least one down and one mid residual, not {count}")
    return (*(f"down_residual_{i}" for i in range(count - 1)), "mid_residual")


def _residual_axes(count: int) -> dict[str, dict[int, str]]:
    return {name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in residual_names(count)}


def kind(component: str) -> str:
    """The graph kind of a component name: ``controlnet2`` (the third ControlNet) is a ``controlnet``."""
    if component.startswith(CONTROLNET) and component[len(CONTROLNET):].isdigit():
        return CONTROLNET
    return component


def controlnet_index(component: str) -> int:
    """Which ControlNet ``controlnetK`` names (``K``); ValueError for any other component."""
    if kind(component) != CONTROLNET:
        raise ValueError(f"{component!r} is not a ControlNet component (controlnet0, controlnet1, ...)")
    return int(component[len(CONTROLNET):])


def graph_io(component: str, residuals: int = 0, *, sdxl: bool = False) -> GraphIO:
    """The I/O of ``component``; the ControlNet graphs need the UNet's residual count (see residual_shapes).

    ``sdxl``: the model's UNet takes SDXL's added conditioning (``unet_sdxl``).
    """
    k = kind(component)
    if k == "unet" and sdxl:
        return GRAPH_IO["unet_sdxl"]
    if k in GRAPH_IO:
        return GRAPH_IO[k]
    if k not in (CONTROLNET, RESIDUAL_UNET):
        raise ValueError(f"unknown component {component!r}")
    names, axes = residual_names(residuals), _residual_axes(residuals)
    if k == CONTROLNET:
        cond = {"controlnet_cond": {0: "batch", 2: "height", 3: "width"}}
        return GraphIO(inputs=(*_UNET_IN, "controlnet_cond"), outputs=names,
                       dynamic_axes={**_UNET_IN, **cond, **axes})
    return GraphIO(inputs=(*_UNET_IN, *names), outputs=("model_output",),
                   dynamic_axes={**_UNET_IN, **axes, "model_output": _LATENT})
