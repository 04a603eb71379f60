"""dreamwire's on-disk store: where cached artifacts live, and entries that are either whole or absent.

The built-in tiny model, exported ONNX graphs and TensorRT engines are all
*entries*: a folder ``<root>/<name>/`` whose files are listed with size and
sha256 in ``manifest.json``. An entry is built under a temporary name and
renamed into place in one step, so a crash never leaves a half-written entry
under the real name; a later truncation or corruption fails the manifest
check and the entry is rebuilt, never silently reused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class StoreError(RuntimeError):
    """A store entry could not be built or checked."""


def cache_root() -> Path:
    """Where dreamwire keeps the tiny model and built engines (``$DREAMWIRE_CACHE`` overrides)."""
    env = os.environ.get("DREAMWIRE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dreamwire"))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def key_digest(key: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(key), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _write_manifest(folder: Path, key: Mapping[str, Any]) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    if not files:
        raise StoreError(f"building {folder.name} produced no files")
    manifest = {"key": dict(key), "digest": key_digest(key), "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def check_entry(folder: Path, key: Mapping[str, Any]) -> str | None:
    """``None`` when the entry is complete and intact, else the reason it is not."""
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return "missing" if not folder.exists() else "no manifest (interrupted build?)"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = manifest["files"]
        digest = manifest["digest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({exc})"
    if digest != key_digest(key):
        return "manifest belongs to a different key"
    for rel, meta in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        st = path.stat()
        if st.st_size != meta["size"]:
            return f"{rel} is {st.st_size} bytes, expected {meta['size']} (truncated or replaced)"
        if _sha256_for_stat(str(path), st.st_size, st.st_mtime_ns) != meta["sha256"]:
            return f"{rel} content does not match its sha256 (corrupt)"
    return None


@functools.lru_cache(maxsize=256)
def _sha256_for_stat(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, hashed once per (size, mtime) in a process: big engines are re-checked cheaply."""
    return file_sha256(Path(path))


def ensure_entry(name: str, key: Mapping[str, Any], build: Callable[[Path], None], root: Path) -> Path:
    """The folder ``root/name`` for ``key``, built by ``build(tmp_folder)`` when missing, stale or corrupt.

    ``build`` writes its files into the folder it is given; the manifest is
    added afterwards and the folder renamed into place in one step. When
    another process finished the same entry first, its entry is used if it is
    intact; otherwise the rename error is raised, never swallowed.
    """
    target = root / name
    problem = check_entry(target, key)
    if problem is None:
        return target
    if problem != "missing":
        log.warning("cache entry %s is invalid (%s); rebuilding it", target, problem)
        shutil.rmtree(target, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(tmp)
        _write_manifest(tmp, key)
        try:
            tmp.rename(target)
        except OSError:
            if check_entry(target, key) is not None:
                raise
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    if not (target / MANIFEST).is_file():
        raise StoreError(f"cache entry {target} was not created")
    return target
