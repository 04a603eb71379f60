"""The live layer: the frame loop, control state, OSC (wire, handler, server) and telemetry."""
