"""The bench lab: ``dreamwire bench`` (engine, backend, ControlNet and loop figures, reports, the GPU check).

It builds engines the way ``dreamwire run`` does (dreamwire.backends.assemble) and runs the frame loop
from dreamwire.live, and nothing below it imports it.
"""
