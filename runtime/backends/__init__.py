"""Interchangeable executors for the three networks the engine runs per frame."""

from runtime.backends.base import Backend

__all__ = ["Backend"]
