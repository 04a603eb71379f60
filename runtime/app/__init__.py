"""The app layer: the ``dreamwire`` command, its settings, and the wiring of a run."""
