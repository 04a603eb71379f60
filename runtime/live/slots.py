"""LatestSlot: the one-item mailbox between the loop's threads, so nobody ever waits on a slower stage."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """:meth:`put` replaces an unread item (and says so, so it can be counted as a drop); :meth:`get` takes it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced one nobody read (a drop)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float) -> T | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None, timeout)
