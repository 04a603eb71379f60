"""dreamwire: a headless real-time diffusion runtime for live visuals (the StreamDiffusion method).

Layers, imports pointing down only (checked by import-linter): ``app`` (CLI,
config, wiring) > ``live`` (frame loop, OSC, telemetry) > ``bridges`` (one file
per transport) > ``backends`` > ``models`` > ``engine`` > ``control`` (the
parameter schema) > ``logs``. See docs/architecture.md.
"""

__version__ = "0.1.0"
