"""On-disk cache of exported ONNX graphs and TensorRT engines, keyed by everything that changes them.

Each artifact lives in its own folder ``<cache>/engines/<component>-<fmt>-<digest>/``
next to a ``manifest.json`` listing every file's size and sha256. Folders are
built under a temporary name and renamed into place, so a crash never leaves
a half-written entry under the real name; a later truncation or corruption
fails the manifest check and the entry is rebuilt (never silently reused).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.models import cache_root

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the folder layout or export wrappers change meaning
MANIFEST = "manifest.json"
_CONTENT_HASH_LIMIT = 64 * 1024 * 1024  # bytes: smaller model files are content-hashed, larger ones stat'ed
_CONFIG_SUFFIXES = {".json", ".txt", ".yaml", ".yml", ".model"}


class CacheError(RuntimeError):
    """A cache entry could not be built or a model could not be fingerprinted."""


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes an exported graph or a built engine.

    ONNX keys leave the engine-only fields empty: one dynamic-shape export
    serves every resolution, batch and GPU. TensorRT keys fill all of them.
    """

    component: str  # "unet" | "encoder" | "decoder"
    model_id: str
    model_hash: str
    loras: tuple[tuple[str, float], ...] = ()
    dtype: str = "float32"
    exporter: str = "torchscript"
    opset: int = 17
    fmt: str = "onnx"  # "onnx" | "trt"
    resolution: str = ""  # ResolutionProfile.label()
    batch: str = ""  # BatchProfile.label(), which includes the guidance mode and frames
    guidance: str = ""
    trt_version: str = ""
    gpu: str = ""  # device name and compute capability
    options: tuple[tuple[str, str], ...] = field(default=())  # builder flags (fp16, workspace, ...)
    version: int = CACHE_FORMAT

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def dirname(self) -> str:
        return f"{self.component}-{self.fmt}-{self.digest()}"


def engines_dir() -> Path:
    return cache_root() / "engines"


# --- fingerprints ----------------------------------------------------------------------------


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Hash of a model folder: config files and small weights by content, big weights by size+mtime.

    Content-hashing gigabytes of safetensors on every start would cost seconds;
    size plus modification time changes whenever the file is replaced.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        st = path.stat()
        if path.suffix in _CONFIG_SUFFIXES or st.st_size <= _CONTENT_HASH_LIMIT:
            h.update(f"{rel}:{_file_sha256(path)}\n".encode())
        else:
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


_REGISTERED: dict[str, str] = {}


def register_model_hash(source: str, digest: str) -> None:
    """Declare the hash of a model built in memory (e.g. the GPU benchmark's random-weight UNet)."""
    _REGISTERED[source] = digest


def model_fingerprint(source: str) -> str:
    """Revision/hash of a model: a local folder's fingerprint, or the hub snapshot it was loaded from."""
    if source in _REGISTERED:
        return _REGISTERED[source]
    path = Path(source).expanduser()
    if path.is_dir():
        return folder_fingerprint(path)
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(source, local_files_only=True))
    except (ImportError, OSError, ValueError) as exc:
        raise CacheError(f"cannot fingerprint model {source!r} for the engine cache: {exc}") from exc
    return f"{snapshot.name[:12]}-{folder_fingerprint(snapshot)}"


def gpu_signature(device) -> str:
    """GPU name and compute capability; engines are not portable across either."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return "cpu"
    props = torch.cuda.get_device_properties(device)
    return f"{props.name}|sm{props.major}{props.minor}"


# --- entries ---------------------------------------------------------------------------------


def _write_manifest(folder: Path, key: CacheKey) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _file_sha256(path)}
    if not files:
        raise CacheError(f"building {key.dirname()} produced no files")
    manifest = {"key": key.as_dict(), "digest": key.digest(), "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def check_entry(folder: Path, key: CacheKey) -> str | None:
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
    if digest != key.digest():
        return "manifest belongs to a different key"
    for rel, meta in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != meta["size"]:
            return f"{rel} is {size} bytes, expected {meta['size']} (truncated or replaced)"
        if _sha256_for_stat(str(path), size, path.stat().st_mtime_ns) != meta["sha256"]:
            return f"{rel} content does not match its sha256 (corrupt)"
    return None


@functools.lru_cache(maxsize=256)
def _sha256_for_stat(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, hashed once per (size, mtime) in a process: big engines are re-checked cheaply."""
    return _file_sha256(Path(path))


def manifest_files(folder: Path) -> Iterable[str]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"].keys()


def ensure_entry(key: CacheKey, build: Callable[[Path], None], root: Path | None = None) -> Path:
    """The folder for ``key``, built by ``build(tmp_folder)`` when missing, stale or corrupt.

    ``build`` writes its files into the folder it is given; the manifest is
    added afterwards and the folder renamed into place in one step.
    """
    root = root or engines_dir()
    target = root / key.dirname()
    problem = check_entry(target, key)
    if problem is None:
        return target
    if problem != "missing":
        log.warning("cache entry %s is invalid (%s); rebuilding it", target, problem)
        shutil.rmtree(target, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key.dirname()}-", dir=root))
    try:
        build(tmp)
        _write_manifest(tmp, key)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same entry first; use theirs if it is intact
            if check_entry(target, key) is not None:
                raise
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    if not (target / MANIFEST).is_file():
        raise CacheError(f"cache entry {target} was not created")
    return target
