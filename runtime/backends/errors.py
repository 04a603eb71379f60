"""The one error a requested-but-unusable backend raises; its message names the fix (pip extra)."""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """A backend was asked for by name but cannot run here; ``str()`` says what to install or change."""
