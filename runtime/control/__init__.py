"""The control layer: every live parameter's kind, default and doc (the schema), and validated snapshots.

Pure data with no I/O, at the bottom of the layers, so the engine, the OSC
handler, the CLI and the docs generator all read the same declarations.
"""

from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params, validate
from dreamwire.control.schema import MAX_STEPS, SCHEMA, SPECS, ParamSpec

__all__ = ["MAX_STEPS", "SCHEMA", "SPECS", "ControlError", "ParamSpec", "Params", "validate"]
