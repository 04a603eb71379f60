"""Work the engine must not wait for: text conditioning computed on a worker thread, newest request wins.

A prompt blend needs one CLIP pass per uncached prompt; on the engine thread
a 16-prompt blend would stop frames for as long as that takes. Here it runs
on a worker; the engine keeps stepping with the conditioning it has and
swaps the new one in at a step boundary once it is ready. If newer requests
arrive meanwhile, only the newest result is ever applied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


class Background:
    """Runs ``fn`` for each :meth:`submit` on one worker thread; :meth:`take` yields the newest finished result."""

    def __init__(self, name: str = "dreamwire-prompts") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._wanted: Hashable | None = None
        self._future: Future | None = None
        self._key: Hashable | None = None

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._future is not None

    def submit(self, key: Hashable, fn: Callable[[], Any]) -> None:
        with self._lock:
            self._wanted = key
            self._key = key
            self._future = self._pool.submit(_finished_on_device, fn)

    def take(self) -> tuple[Hashable, Any] | None:
        """``(key, result)`` of the newest request once it finished, else None; re-raises its error once."""
        with self._lock:
            future, key = self._future, self._key
            if future is None or not future.done() or key != self._wanted:
                return None
            self._future = self._key = None
        return key, future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _finished_on_device(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` and wait for its queued GPU work on this thread's stream, so the result is ready anywhere."""
    out = fn()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.current_stream().synchronize()
    return out
