"""dreamwire runtime: engine, models, backends, control, frame loop and CLI."""

__version__ = "0.1.0"
