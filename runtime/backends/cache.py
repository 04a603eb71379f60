"""The cache of exported ONNX graphs and TensorRT engines, keyed by everything that changes them.

Each artifact is a store entry ``<cache>/engines/<component>-<fmt>-<digest>/``
(see :mod:`dreamwire.models.store`: built under a temporary name, renamed into
place, checked against a sha256 manifest on every use). This module adds what
is specific to engines: the key, and the fingerprints of the weights it names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dreamwire.files import atomic_write
from dreamwire.models import store
from dreamwire.models.store import MANIFEST, cache_root, file_sha256

__all__ = ["MANIFEST", "CacheError", "CacheKey", "atomic_write", "check_entry", "engines_dir", "ensure_entry",
           "folder_fingerprint", "gpu_signature", "model_fingerprint"]

CACHE_FORMAT = 1  # bump when the folder layout or export wrappers change meaning
_CONTENT_HASH_LIMIT = 64 * 1024 * 1024  # bytes: smaller model files are content-hashed, larger ones stat'ed
_CONFIG_SUFFIXES = {".json", ".txt", ".yaml", ".yml", ".model"}


class CacheError(RuntimeError):
    """A model could not be fingerprinted for the engine cache."""


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
        return store.key_digest(self.as_dict())

    def dirname(self) -> str:
        return f"{self.component}-{self.fmt}-{self.digest()}"


def engines_dir() -> Path:
    return cache_root() / "engines"


def ensure_entry(key: CacheKey, build: Callable[[Path], None], root: Path | None = None) -> Path:
    """The entry folder for ``key``, built by ``build(tmp_folder)`` when missing, stale or corrupt."""
    return store.ensure_entry(key.dirname(), key.as_dict(), build, root or engines_dir())


def check_entry(folder: Path, key: CacheKey) -> str | None:
    """``None`` when the entry is intact, else why not (see :func:`dreamwire.models.store.check_entry`)."""
    return store.check_entry(folder, key.as_dict())


# --- fingerprints ----------------------------------------------------------------------------


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
            h.update(f"{rel}:{file_sha256(path)}\n".encode())
        else:
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def model_fingerprint(source: str) -> str:
    """Revision/hash of a model: a local folder's fingerprint, or the hub snapshot it was loaded from."""
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
