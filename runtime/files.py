"""Whole-or-nothing file writes, for everything a crash must not leave half-written.

Engine plans, timing caches, build reports and the scene file are each rewritten
whole: the bytes go to a hidden temporary file in the same folder, are flushed
and fsynced, and replace the old file in one ``os.replace`` (atomic on POSIX and
on Windows within one volume). A crash or a full disk mid-write leaves the old
file as it was and at most a temporary file; the folder is synced afterwards so
the rename itself survives a power cut (POSIX; Windows has no folder handles).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def atomic_write(path: Path, data) -> Path:
    """Write ``data`` (bytes or any buffer, e.g. TensorRT's IHostMemory) so that ``path`` is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(memoryview(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("cannot fsync %s", folder)
    finally:
        os.close(fd)
