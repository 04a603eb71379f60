"""The control schema: every live parameter declared once, with its kind, default and doc.

OSC, the TOML config, the CLI and ``docs/osc.md`` all read :data:`SCHEMA`, so a
parameter cannot drift between them. Values only reach the engine through
:class:`~dreamwire.control.params.Params` snapshots whose every value passed
its kind's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dreamwire.control.kinds import Bool, Choice, Float, IndexList, Int, Kind, Pairs, Text, ValueList

MAX_STEPS = 8
"""Most denoising steps (stream-batch depth) a live change may reach; engines and profiles are sized for it."""

T_INDEX_GRID = 50
"""Default length of the LCM timestep grid ``t_index_list`` indexes (``set_timesteps(50)``)."""

SEED_MAX = 2**31 - 1

QUANTIZE = ("off", "beat", "bar")
"""Where a change may land: at once, on the next beat, or on the next bar (see dreamwire.control.beats)."""
MAX_CONTROLNETS = 4
"""Most ControlNets one engine loads; the per-ControlNet live lists hold at most this many values."""


@dataclass(frozen=True)
class ParamSpec:
    """One live parameter: its kind (type and bounds), default and the doc line users read."""

    name: str
    kind: Kind
    default: Any
    doc: str
    aliases: tuple[str, ...] = ()  # other OSC names for it, e.g. the short ones other tools use

    @property
    def type_label(self) -> str:
        return self.kind.label

    @property
    def range_label(self) -> str:
        return self.kind.range_label()


SCHEMA: tuple[ParamSpec, ...] = (
    ParamSpec("prompt", Text(), "an oil painting of a city at night, vivid colors",
              "Positive prompt; ignored while prompt_blend is non-empty."),
    ParamSpec("prompt_blend", Pairs(Text(), "prompt"), (),
              "Weighted prompt blend: embeddings mixed by normalised weights. Empty = use prompt."),
    ParamSpec("negative_prompt", Text(), "low quality, blurry, watermark",
              "Negative prompt, used by guidance 'full' and 'onetime'."),
    ParamSpec("guidance_scale", Float(0.0, 20.0), 1.2,
              "Guidance scale (1 = no guidance). No effect with guidance 'none'.", aliases=("guidance", "cfg")),
    ParamSpec("delta", Float(0.0, 1.0), 1.0,
              "RCFG residual strength: 0 = no guidance, 1 = the paper's virtual negative."),
    ParamSpec("seed", Int(0, SEED_MAX), 2, "Noise seed; ignored while seed_blend is non-empty."),
    ParamSpec("seed_blend", Pairs(Int(0, SEED_MAX), "seed"), (),
              "Weighted noise blend of several seeds (variance kept at 1). Empty = use seed."),
    ParamSpec("strength", Float(0.0, 1.0), 0.4,
              "How far the output departs from the input (0..1); mapped onto t_index_list as in diffusers' "
              "LCM img2img."),
    ParamSpec("steps", Int(1, MAX_STEPS), 2, "Denoising steps n = stream batch depth (latency n-1 frames)."),
    ParamSpec("t_index_list", IndexList(0, T_INDEX_GRID - 1, MAX_STEPS), (),
              "Explicit ascending LCM step indices (0..49); overrides strength/steps when non-empty.",
              aliases=("t_index",)),
    ParamSpec("similarity_filter", Bool(), False, "Stochastic similarity filter on/off (img2img only)."),
    ParamSpec("similarity_threshold", Float(0.0, 1.0), 0.98, "Cosine similarity above which frames may be skipped."),
    ParamSpec("similarity_max_skip", Int(0, 1000), 10, "Most consecutive skips before a frame is forced through."),
    ParamSpec("latent_feedback", Float(0.0, 1.0), 0.0,
              "Latent feedback: each new frame's latent becomes (1-a)*encode(frame) + a*(last output's clean "
              "latent), which steadies flicker by pulling each frame toward what was just shown. 0 = off "
              "(today's output, bit for bit); Daydream's StreamDiffusion defaults to 0.15; high values smear "
              "motion into trails. img2img only (txt2img has no input latent: no effect)."),
    ParamSpec("pause", Bool(), False, "Hold the last output; the engine does no work."),
    ParamSpec("bypass", Bool(), False, "Pass input frames straight through to the output."),
    ParamSpec("quantize", Choice(QUANTIZE), "off",
              "Hold each change (parameters, morph starts, scene recalls) until the next beat or bar of the "
              "tempo (/dreamwire/tempo, /dreamwire/beat taps or Ableton Link); a change of quantize itself "
              "applies at once."),
    # --- ControlNet: one value per loaded ControlNet (in --controlnet order); empty = the defaults ---
    ParamSpec("controlnet_scale", ValueList(Float(0.0, 5.0), MAX_CONTROLNETS), (),
              "ControlNet conditioning scales, one per ControlNet. Empty = the --controlnet ID:SCALE values."),
    ParamSpec("controlnet_enabled", ValueList(Bool(), MAX_CONTROLNETS), (),
              "ControlNets on/off, one per ControlNet (off = residuals skipped, no rebuild). Empty = all on."),
    ParamSpec("controlnet_start", ValueList(Float(0.0, 1.0), MAX_CONTROLNETS), (),
              "Fraction of the denoising steps before which each ControlNet is inactive; must be below its "
              "controlnet_end. Empty = 0."),
    ParamSpec("controlnet_end", ValueList(Float(0.0, 1.0), MAX_CONTROLNETS), (),
              "Fraction of the denoising steps after which each ControlNet is inactive: step i of n runs it "
              "when start <= i/n and (i+1)/n <= end, so at n = 1 (sd-turbo's usual) any end below 1 or start "
              "above 0 turns it off. Empty = 1."),
)

SPECS: Mapping[str, ParamSpec] = {s.name: s for s in SCHEMA}


@dataclass(frozen=True)
class OrderedPair:
    """Two per-ControlNet lists whose entries must rise: ``low[i] < high[i]`` (an empty list or a missing
    entry counts as its default). Checked on every snapshot, so a bundle setting both is judged whole."""

    low: str
    high: str
    low_default: float
    high_default: float


ORDERED_PAIRS: tuple[OrderedPair, ...] = (
    OrderedPair("controlnet_start", "controlnet_end", 0.0, 1.0),  # start >= end: never active; diffusers refuses it
)
