"""One :class:`RuntimeConfig` from the embedded defaults, an optional TOML file and CLI flags (in that order).

The ``[control]`` table mirrors :data:`runtime.control.SCHEMA` key for key and
goes through the same :func:`~runtime.control.validate` as OSC, so a value
that OSC would reject is rejected here too. Every problem raises
:class:`ConfigError` with one line that names the file, the key and the fix;
the CLI turns it into exit code 2.

Example ``dreamwire.toml``::

    model = "tiny"
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridges.base import BridgeError, parse_uri
from runtime.control import SPECS, ControlError, validate
from runtime.osc import OscSettings
from runtime.osc_wire import parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_SOURCE = "pattern"
DEFAULT_IMAGES_SINK = "images:./dreamwire-out"
LOG_LEVELS = ("debug", "info", "warning", "error")
GUIDANCE = ("none", "full", "self", "onetime")
BATCHING = ("stream", "sequential")
MODES = ("img2img", "txt2img")
OUTPUT_SIZES = ("input", "engine")


class ConfigError(ValueError):
    """A config file, flag or bridge name is wrong; ``str()`` is the one line shown to the user."""


@dataclass
class RuntimeConfig:
    """Everything ``dreamwire run`` needs; ``None`` means "decide from the device/model" (see :func:`resolve`)."""

    model: str = "tiny"
    backend: str = "auto"
    device: str | None = None
    taesd: str | None = None
    lcm_lora: str = "latent-consistency/lcm-lora-sdv1-5"
    loras: tuple[tuple[str, float], ...] = ()
    frame_buffer: int = 1
    source: str = DEFAULT_SOURCE
    sink: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str = "img2img"
    guidance: str | None = None  # None: "self" for img2img, "none" for txt2img (RCFG needs an input image)
    batching: str = "stream"
    frames: int | None = None
    output_size: str = "input"
    log_level: str = "info"
    report: bool = False
    osc: OscSettings = field(default_factory=OscSettings)
    control: dict[str, Any] = field(default_factory=dict)


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside {lo} .. {hi}")
        return v
    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return v
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _uri(v: Any) -> str:
    v = _str(v)
    try:
        parse_uri(v)
    except BridgeError as exc:
        raise ValueError(str(exc)) from None
    return v


def _resolution(v: Any) -> int:
    v = _int(64, 8192)(v)
    if v % 8:
        raise ValueError(f"{v} is not a multiple of 8")
    return v


def _loras(v: Any) -> tuple[tuple[str, float], ...]:
    from runtime.models import parse_lora

    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError(f"expected a list of 'PATH[:SCALE]' strings, got {v!r}")
    return tuple(parse_lora(x.strip()) for x in v)


def _allow(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [x for x in v.replace(",", " ").split() if x]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of sender IP addresses, got {v!r}")
    return tuple(v)


def _target(v: Any) -> tuple[str, int] | None:
    return parse_target(_str(v))


def _prefix(v: Any) -> str:
    v = _str(v).rstrip("/")
    if not v.startswith("/") or " " in v:
        raise ValueError(f"expected an OSC address prefix like /dreamwire, got {v!r}")
    return v


TOP: dict[str, Callable[[Any], Any]] = {
    "model": _str, "backend": _str, "device": _str, "taesd": _str, "lcm_lora": _str, "loras": _loras,
    "frame_buffer": _int(1, 8),
    "source": _uri, "sink": _uri, "width": _resolution, "height": _resolution,
    "mode": _choice(MODES), "guidance": _choice(GUIDANCE), "batching": _choice(BATCHING), "frames": _int(1, 2**31 - 1),
    "output_size": _choice(OUTPUT_SIZES), "log_level": _choice(LOG_LEVELS), "report": _bool,
}
OSC: dict[str, Callable[[Any], Any]] = {
    "host": _str, "port": _int(0, 65535), "allow": _allow, "telemetry": _target, "tcp": _bool,
    "prefix": _prefix,
}
TABLES = ("osc", "control")


def _unknown(where: str, key: str, known: list[str], table: str = "") -> ConfigError:
    inside = f" in [{table}]" if table else ""
    return ConfigError(f"{where}: unknown key {key!r}{inside}; expected one of: {', '.join(known)}")


def load_toml(path: str | Path, base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Read a TOML file over ``base`` (defaults if omitted); raises :class:`ConfigError`."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return apply_mapping(data, base or RuntimeConfig(), str(p))


def apply_mapping(data: dict[str, Any], cfg: RuntimeConfig, where: str) -> RuntimeConfig:
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            continue
        if key not in TOP:
            raise _unknown(where, key, [*TOP, *(f"[{t}]" for t in TABLES)])
        _checked_set(cfg, TOP, key, value, f"{where}: {key}")
    for key, value in data.get("osc", {}).items():
        if key not in OSC:
            raise _unknown(where, key, list(OSC), "osc")
        _checked_set(cfg.osc, OSC, key, value, f"{where}: osc.{key}")
    for key, value in data.get("control", {}).items():
        if key not in SPECS:
            raise _unknown(where, key, list(SPECS), "control")
        try:
            cfg.control[key] = validate(key, value)
        except ControlError as exc:
            raise ConfigError(f"{where}: control.{exc}") from None
    return cfg


def set_value(cfg: RuntimeConfig, key: str, value: Any, flag: str | None = None) -> None:
    """Apply one top-level or ``osc.*`` setting (from a flag) with the same checks as the TOML file."""
    table, _, name = key.rpartition(".")
    checks, target = (OSC, cfg.osc) if table == "osc" else (TOP, cfg)
    flag = flag or "--" + (f"osc-{name}" if table == "osc" else name).replace("_", "-")
    _checked_set(target, checks, name, value, flag)


def _checked_set(target: Any, checks: dict[str, Callable[[Any], Any]], name: str, value: Any, label: str) -> None:
    """Check ``value`` with the key's checker and set it; a bad value becomes ``ConfigError("label: why")``."""
    try:
        setattr(target, name, checks[name](value))
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


def resolve(cfg: RuntimeConfig, device_type: str) -> RuntimeConfig:
    """Fill what depends on the device: the sink and the engine resolution (256 for tiny on CPU, else 512)."""
    if cfg.sink is None:
        cfg.sink = default_sink(cfg.source)
    if cfg.guidance is None:
        cfg.guidance = "none" if cfg.mode == "txt2img" else "self"
    side = 256 if (device_type == "cpu" and cfg.model == "tiny") else 512
    cfg.width = cfg.width or side
    cfg.height = cfg.height or side
    return cfg
