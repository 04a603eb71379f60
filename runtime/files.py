"""Whole-or-nothing file writes, for everything a crash must not leave half-written.

Engine plans, timing caches, build reports and the scene file are each rewritten
whole: the bytes go to a hidden temporary file in the same folder, are flushed
and fsynced, and replace the old file in one ``os.replace`` (atomic on POSIX and
on Windows within one volume). A crash or a full disk mid-write leaves the old
file as it was and at most a temporary file; the folder is synced afterwards so
the rename itself survives a power cut (POSIX; Windows has no folder handles).

Windows refuses the replace (``PermissionError``: access denied or sharing
violation) while another process has the target open, which antivirus scanners,
the search indexer and editors do for moments at a time; the replace is retried
for about a second before it fails, and then the new bytes are kept beside the
target (``NAME.unsaved``) so nothing is lost. A process killed mid-write leaves
its ``.NAME.PID.TID.tmp``; :func:`remove_stale_temps` removes those of one
target whose writer is gone, and never one a running process may still be writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

# How long a refused os.replace is retried (Windows only: on POSIX a PermissionError does not pass).
REPLACE_RETRY_SECONDS = 1.0 if os.name == "nt" else 0.0
_FIRST_PAUSE = 0.01  # doubled after each refusal: 10, 20, 40 ... ms, 8 tries in a second
# A temp file modified this recently is left alone even when its PID is not running here: the folder may
# be shared with another machine, whose PIDs mean nothing on this one.
STALE_AFTER_SECONDS = 60.0
_sleep, _clock = time.sleep, time.perf_counter  # the retry's pauses and clock (tests swap them)


def temp_name(path: Path) -> Path:
    """The hidden file ``path``'s new content is written to by this thread of this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


class TargetHeldError(PermissionError):
    """``os.replace`` stayed refused: the target is unchanged, the new bytes are in :attr:`kept`."""

    def __init__(self, errno: int | None, message: str, path: Path, kept: Path) -> None:
        super().__init__(errno, message, str(path))
        self.kept = kept


def atomic_write(path: Path, data) -> Path:
    """Write ``data`` (bytes or any buffer, e.g. TensorRT's IHostMemory) so that ``path`` is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = temp_name(path)
    try:
        with tmp.open("wb") as fh:
            fh.write(memoryview(data))
            fh.flush()
            os.fsync(fh.fileno())
        replace_retrying(tmp, path)
    except TargetHeldError as exc:
        if exc.kept == tmp:
            tmp = None  # the only copy of the new bytes: leave it
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    _sync_folder(path.parent)
    return path


def replace_retrying(tmp: Path, path: Path, *, seconds: float | None = None) -> None:
    """``os.replace(tmp, path)``, retried with doubling pauses while it is refused, for up to ``seconds``
    (default :data:`REPLACE_RETRY_SECONDS`); then the new bytes move to ``NAME.unsaved`` and
    :class:`TargetHeldError` says where they are. The target is never touched by a failed try."""
    budget = REPLACE_RETRY_SECONDS if seconds is None else seconds
    deadline = _clock() + budget
    pause, tries = _FIRST_PAUSE, 0
    while True:
        tries += 1
        try:
            os.replace(tmp, path)
            return
        except PermissionError as exc:
            left = deadline - _clock()
            if left <= 0:
                raise _held(exc, tmp, path, tries) from exc
        _sleep(min(pause, left))
        pause *= 2


def _held(exc: PermissionError, tmp: Path, path: Path, tries: int) -> TargetHeldError:
    """The error for a target that stayed locked, once the new bytes are where they survive."""
    kept = path.with_name(path.name + ".unsaved")
    try:
        os.replace(tmp, kept)
    except OSError:
        kept = tmp
    return TargetHeldError(exc.errno, f"cannot replace {path}: {exc.strerror or exc}, held by another program "
                                      f"({tries} {'try' if tries == 1 else 'tries'}); the old file is unchanged "
                                      f"and the new content is in {kept}", path, kept)


def remove_stale_temps(path: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temp files a killed writer of ``path`` left behind; returns those removed.

    A temp file is stale when the process in its name is not running on this machine (or is this
    process, and its thread is gone) and it has not been modified for :data:`STALE_AFTER_SECONDS`.
    A file another running dreamwire is writing right now is never touched.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(\d+)\.tmp")
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed  # no folder (yet) or not readable: nothing to clean, and writing will say why
    live_threads = {t.ident for t in threading.enumerate()}
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid, tid = int(match[1]), int(match[2])
        writer_alive = tid in live_threads if pid == os.getpid() else pid_alive(pid)
        try:
            fresh = now - candidate.stat().st_mtime < STALE_AFTER_SECONDS
        except FileNotFoundError:
            continue  # its writer just finished
        if writer_alive or fresh or not candidate.is_file():
            continue
        try:
            candidate.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove the stale temporary file %s: %s", candidate, exc.strerror or exc)
            continue
        log.info("removed %s, left by a writer of %s that was stopped mid-write (process %d)",
                 candidate.name, path.name, pid)
        removed.append(candidate)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when unsure: keeping a file is the safe side)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence and permission check only (POSIX)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows, so ask kernel32 instead
    # (OpenProcess / GetExitCodeProcess, STILL_ACTIVE = 259; ERROR_INVALID_PARAMETER = 87 for no such PID).
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = ctypes.c_void_p  # a HANDLE is pointer-sized
    kernel32.OpenProcess.argtypes = [ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
    kernel32.GetExitCodeProcess.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)]
    kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() != 87  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259
    finally:
        kernel32.CloseHandle(handle)


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
