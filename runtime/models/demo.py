"""The built-in ``demo`` model: small trained weights shipped in the package, the default ``--model``.

A newcomer's first ``dreamwire run`` has no weights to hand, and the random ``tiny`` model shows
only dark noise. The demo model (trained by :mod:`dreamwire.models.train_demo` on procedural
shapes and colours) keeps the input picture and washes it toward a colour named in the prompt, so
the first run shows both that the input made it through and that the prompt does something. It
is a plain diffusers folder next to this module, loaded like any local model.
"""

from __future__ import annotations

from pathlib import Path

from dreamwire.models.parts import ModelLoadError

DEMO = "demo"
# The words the demo was trained to answer, and the colour each washes the picture toward (RGB in 0..1).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.12, 0.1), "orange": (0.95, 0.5, 0.1), "yellow": (0.95, 0.88, 0.15),
    "green": (0.15, 0.75, 0.2), "cyan": (0.1, 0.8, 0.85), "blue": (0.1, 0.25, 0.9),
    "purple": (0.55, 0.2, 0.8), "pink": (0.95, 0.45, 0.7),
}
DEMO_SUMMARY = (f"model 'demo': a small built-in model trained on shapes and colours; it keeps the input and tints "
                f"it toward the colour the prompt names ({', '.join(COLOURS)})")
RETRAIN = "python -m dreamwire.models.train_demo --out DIR"


def demo_model_dir() -> Path:
    """The packaged weights' folder; an install that lost them says how to make them."""
    folder = Path(__file__).resolve().parent / "demo_model"
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"the built-in demo model is missing from this install ({folder}); reinstall "
                             f"dreamwire, or train it with `{RETRAIN}` and pass --model DIR")
    return folder
