"""The engine layer: the StreamDiffusion method as pure math plus :class:`StreamEngine`.

It touches no socket, file or clock it does not own, so the equivalence tests
drive it frame by frame; backends implement its :class:`Backend` protocol.
"""
