"""How a user names what to load: ``ID[:SCALE]`` strings for LoRAs and ControlNets, and the LCM-LoRA defaults.

Pure parsing, apart from the loaders that act on it, so the CLI and the config reader can check a
name (and build ``--help``) without importing torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"
DEFAULT_LCM_LORA_SDXL = "latent-consistency/lcm-lora-sdxl"  # used instead of the SD 1.5 one for SDXL models


def parse_lora(text: str) -> tuple[str, float]:
    """``"path/or/id[:SCALE]"`` -> (path, scale); a Windows drive colon is not a scale."""
    path, sep, tail = text.rpartition(":")
    if sep and path and not tail.startswith(("\\", "/")):
        try:
            return path, float(tail)
        except ValueError:
            pass
    return text, 1.0


@dataclass(frozen=True)
class ControlNetSource:
    """One ``--controlnet`` entry: what to load and its default conditioning scale."""

    source: str
    scale: float = 1.0

    @staticmethod
    def parse(text: str) -> ControlNetSource:
        """``"id/or/folder[:SCALE]"``, parsed like ``--lora`` (a Windows drive colon is not a scale)."""
        path, scale = parse_lora(text.strip())
        if not path:
            raise ValueError(f"{text!r}: expected ID[:SCALE]")
        return ControlNetSource(path, scale)
