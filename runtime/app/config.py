"""One :class:`RuntimeConfig` from the embedded defaults, an optional TOML file and CLI flags (in that order).

Every start-up option is one field declared with :func:`~dreamwire.control.settings.setting`:
its doc, check and CLI form live there, and the TOML loader below, the
``dreamwire run`` flags and ``docs/config.md`` are all generated from the
fields. The ``[control]`` table mirrors the live-parameter schema key for
key and goes through each parameter's kind, as OSC does, so a value that OSC
would reject is rejected here too. Every problem raises :class:`ConfigError`
with one line that names the file, the key and the fix; the CLI turns it
into exit code 2.

Example ``dreamwire.toml``::

    model = "demo"
    source = "pattern"
    sink = "images:./dreamwire-out"
    frames = 100

    [osc]
    port = 7766
    telemetry = "127.0.0.1:7767"

    [control]
    prompt = "a watercolour forest"
    strength = 0.5
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamwire.backends.catalog import NAMES as BACKENDS
from dreamwire.bridges.base import BridgeError, parse_uri
from dreamwire.control.kinds import ControlError
from dreamwire.control.schema import MAX_CONTROLNETS, SPECS
from dreamwire.control.settings import boolean, choice, integer, setting, settings_of, table, tables_of, text
from dreamwire.engine.api import BATCHING, GUIDANCE_MODES, MODES, PREPROCESSORS
from dreamwire.live.failsafe import FailsafeSettings
from dreamwire.live.options import OUTPUT_SIZES
from dreamwire.models.sources import DEFAULT_LCM_LORA, ControlNetSource, parse_lora
from dreamwire.osc.server import OscSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_SOURCE = "pattern"
DEFAULT_IMAGES_SINK = "images:./dreamwire-out"
LOG_LEVELS = ("debug", "info", "warning", "error")
WARM_UP = ("auto", "all", "off")
BACKEND_NAMES = ("auto", *BACKENDS)


class ConfigError(ValueError):
    """A config file, flag or bridge name is wrong; ``str()`` is the one line shown to the user."""


def _uri(v: Any) -> str:
    v = text(v)
    try:
        parse_uri(v)
    except BridgeError as exc:
        raise ValueError(str(exc)) from None
    return v


def _resolution(v: Any) -> int:
    v = integer(64, 8192)(v)
    if v % 8:
        raise ValueError(f"{v} is not a multiple of 8")
    return v


def _loras(v: Any) -> tuple[tuple[str, float], ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError(f"expected a list of 'PATH[:SCALE]' strings, got {v!r}")
    return tuple(parse_lora(x.strip()) for x in v)


def _controlnets(v: Any) -> tuple[ControlNetSource, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, (str, ControlNetSource)) for x in v):
        raise ValueError(f"expected a list of 'ID[:SCALE]' strings, got {v!r}")
    out = tuple(x if isinstance(x, ControlNetSource) else ControlNetSource.parse(x) for x in v)
    if len(out) > MAX_CONTROLNETS:
        raise ValueError(f"{len(out)} ControlNets, at most {MAX_CONTROLNETS}")
    return out


def _control_images(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or any(x not in PREPROCESSORS for x in v):
        raise ValueError(f"expected preprocessor names from {', '.join(PREPROCESSORS)}, got {v!r}")
    return tuple(v)


def _control_sources(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"expected a list of 'input' or source URIs, got {v!r}")
    return tuple(x if x == "input" else _uri(x) for x in v)


@dataclass
class RuntimeConfig:
    """Everything ``dreamwire run`` needs; ``None`` means "decide from the device/model" (see :func:`resolve`)."""

    model: str = setting("demo", "demo (built-in, offline, trained: keeps the input and tints it toward a colour "
                         "named in the prompt), tiny or tiny-sdxl (built-in, offline, random weights), a hub id or "
                         "a local diffusers folder (SD 1.5/2.1 or SDXL, told apart by its config)", text)
    backend: str = setting("auto", "engine backend; auto picks the fastest that runs here", choice(BACKEND_NAMES))
    device: str | None = setting(None, "torch device, e.g. cpu, cuda, cuda:1", text,
                                 default_doc="cuda when available, else cpu")
    taesd: str | None = setting(None, "tiny autoencoder replacing the model's VAE (hub id or folder; 'none' keeps "
                                "the model's VAE)", text, default_doc="the model's VAE; madebyollin/taesdxl for SDXL")
    lcm_lora: str = setting(DEFAULT_LCM_LORA, "LCM-LoRA fused into plain SD 1.5 models (hub id or file/folder; "
                            "'none' to skip; plain SDXL models get latent-consistency/lcm-lora-sdxl in place of "
                            "this default)", text)
    loras: tuple[tuple[str, float], ...] = setting(
        (), "style LoRAs fused at load (any model kind, turbo included), PATH[:SCALE] each", _loras,
        flag="--lora", metavar="PATH[:SCALE]", repeat=True)
    controlnet: tuple[ControlNetSource, ...] = setting(
        (), "ControlNets steering the UNet (hub id, local folder, or tiny), ID[:SCALE] each; live controls: "
        "controlnet_scale/enabled/start/end", _controlnets, flag="--controlnet", metavar="ID[:SCALE]", repeat=True)
    control_image: tuple[str, ...] = setting(
        (), f"each ControlNet's control image, made on the device from the input frame: "
        f"{', '.join(PREPROCESSORS)} (one for all, or one per --controlnet; default canny)", _control_images,
        flag="--control-image", metavar="NAME", repeat=True)
    control_source: tuple[str, ...] = setting(
        (), "where each ControlNet's control image comes from: input (the input frame) or a second source, e.g. "
        "ndi:NAME with a depth map; paired as the latest control frame when the input frame is taken (one for "
        "all, or one per --controlnet; default input)", _control_sources, flag="--control-source", metavar="URI",
        repeat=True)
    frame_buffer: int = setting(1, "frames per engine call; the UNet batch is steps x frame_buffer",
                                integer(1, 8), metavar="F")
    source: str = setting(DEFAULT_SOURCE, "input bridge: pattern[:WxH@FPS], images:DIR[@FPS], video:PATH, "
                          "ndi:NAME, spout:NAME", _uri)
    sink: str | None = setting(None, "output bridge: images:DIR, null, ndi:NAME, spout:NAME", _uri,
                               default_doc="the source's bridge when it can send, else images:./dreamwire-out")
    width: int | None = setting(None, "engine width in pixels (multiple of 8)", _resolution, parse=int,
                                default_doc="256 for demo/tiny/tiny-sdxl on CPU, else 512")
    height: int | None = setting(None, "engine height in pixels (multiple of 8)", _resolution, parse=int,
                                 default_doc="as width")
    mode: str = setting("img2img", "img2img transforms the source; txt2img generates from the prompt (the source "
                        "only paces frames and sets the output size)", choice(MODES))
    guidance: str | None = setting(None, "guidance method: none, full CFG, or RCFG self/onetime",
                                   choice(GUIDANCE_MODES),
                                   default_doc="self for img2img, none for txt2img")
    batching: str = setting("stream", "stream batch, or sequential steps (for comparison)", choice(BATCHING))
    frames: int | None = setting(None, "stop cleanly after this many output frames", integer(1, 2**31 - 1),
                                 metavar="N", default_doc="run until Ctrl-C")
    output_size: str = setting("input", "input: resize outputs back to each input's size; engine: leave them",
                               choice(OUTPUT_SIZES))
    warm_up: str = setting("auto", "compile/capture every shape a live change can reach (steps 1..8) before the "
                           "runtime reports ready: all, off, or auto (all on CUDA, where backends capture "
                           "graphs per shape)", choice(WARM_UP))
    log_level: str = setting("info", "log verbosity", choice(LOG_LEVELS))
    report: bool = setting(False, "print the pipeline overhead (wall vs engine time per frame) on exit", boolean)
    scenes: str | None = setting(None, "TOML file that /dreamwire/scene/save writes (atomically) and the run loads "
                                 "at start; created on the first save", text, metavar="PATH",
                                 default_doc="none: scenes are kept in memory only")
    link: bool = setting(False, "follow an Ableton Link session's tempo and beat (pip install 'dreamwire[link]')",
                         boolean)
    osc: OscSettings = table(OscSettings, "OSC control and telemetry")
    failsafe: FailsafeSettings = table(FailsafeSettings, "what happens when the engine fails mid-show")
    control: dict[str, Any] = field(default_factory=dict)  # initial live parameters, by schema name


CONTROL = "control"


def _unknown(where: str, key: str, known: list[str], table_name: str = "") -> ConfigError:
    inside = f" in [{table_name}]" if table_name else ""
    return ConfigError(f"{where}: unknown key {key!r}{inside}; expected one of: {', '.join(known)}")


def load_toml(path: str | Path, base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Read a TOML file over ``base`` (defaults if omitted); raises :class:`ConfigError`."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return apply_mapping(data, base or RuntimeConfig(), str(p))


def apply_mapping(data: dict[str, Any], cfg: RuntimeConfig, where: str) -> RuntimeConfig:
    """Apply a parsed TOML document: top-level settings, each settings table, then ``[control]``."""
    tables = {name: getattr(cfg, name) for name, _, _ in tables_of(RuntimeConfig)}
    _apply_table(data, cfg, where, "", extra=[*tables, CONTROL])
    for name, target in tables.items():
        _apply_table(_table(data, name, where), target, where, name)
    for key, value in _table(data, CONTROL, where).items():
        spec = SPECS.get(key)
        if spec is None:
            raise _unknown(where, key, list(SPECS), CONTROL)
        try:
            cfg.control[key] = spec.kind.read_toml(key, value)
        except ControlError as exc:
            raise ConfigError(f"{where}: {CONTROL}.{exc}") from None
    return cfg


def _table(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _apply_table(data: dict[str, Any], target: Any, where: str, table_name: str, extra: list[str] = ()) -> None:
    checks = dict(settings_of(type(target)))
    for key, value in data.items():
        if key in extra:
            continue
        if key not in checks:
            known = list(checks) + [f"[{t}]" for t in extra]
            raise _unknown(where, key, known, table_name)
        label = f"{where}: {table_name + '.' if table_name else ''}{key}"
        set_checked(target, key, value, label)


def set_checked(target: Any, name: str, value: Any, label: str) -> None:
    """Check ``value`` with the field's check and set it; a bad value becomes ``ConfigError("label: why")``."""
    s = dict(settings_of(type(target)))[name]
    try:
        setattr(target, name, s.check(value))
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def default_sink(source: str) -> str:
    """The same bridge back out when it can carry output; otherwise an image folder you can look at.

    An image *folder* source gets ``<folder>-out`` (never writing into its input);
    NDI and Spout publish under the name ``dreamwire`` so the output doesn't
    collide with the sender it reads.
    """
    scheme, rest = parse_uri(source)
    if scheme == "images":
        folder = rest.rsplit("@", 1)[0].rstrip("/\\") or "."
        return f"images:{folder}-out"
    if scheme in ("ndi", "spout"):
        return f"{scheme}:dreamwire"
    return DEFAULT_IMAGES_SINK


def check_combination(cfg: RuntimeConfig) -> None:
    """Refuse options that are each valid but together would start and then fail on every frame.

    txt2img hands the engine no input frame, so a ControlNet whose control image is made from the
    input (``--control-source input``, the default) has nothing to preprocess; only a second
    source can feed it.
    """
    if cfg.mode != "txt2img" or not cfg.controlnet:
        return
    routes = cfg.control_source or ("input",)
    if len(routes) == 1:
        routes = routes * len(cfg.controlnet)
    from_input = [net.source for net, route in zip(cfg.controlnet, routes) if route == "input"]
    if from_input:
        raise ConfigError(
            f"--mode txt2img gives the engine no input frame, so --controlnet {', '.join(from_input)} cannot take "
            f"its control image from the input: give it a second source with --control-source URI (e.g. "
            f"ndi:NAME with a depth map), or use --mode img2img")


def resolve(cfg: RuntimeConfig, device_type: str) -> RuntimeConfig:
    """Fill what depends on the device: the sink and the engine resolution (256 for built-ins on CPU, else 512)."""
    if cfg.sink is None:
        cfg.sink = default_sink(cfg.source)
    if cfg.guidance is None:
        cfg.guidance = "none" if cfg.mode == "txt2img" else "self"
    side = 256 if (device_type == "cpu" and cfg.model in ("demo", "tiny", "tiny-sdxl")) else 512
    cfg.width = cfg.width or side
    cfg.height = cfg.height or side
    return cfg
