"""The control side of a show: OSC in (wire, handler, server), rig (morphs, quantize, scenes), replies.

It sits above `dreamwire.live` and sees the frame side only through `ParamState` (what the next
engine step uses) and `Stats` (what the frame side measured): the import-linter contract in
pyproject.toml holds it to that.
"""
