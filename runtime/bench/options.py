"""``dreamwire bench``'s options: declared apart from the lab so the CLI builds its help without torch."""

from __future__ import annotations

from dataclasses import dataclass

from dreamwire.backends.catalog import NAMES as BACKENDS
from dreamwire.control.schema import MAX_STEPS
from dreamwire.control.settings import boolean, choice, integer, setting, text

ARCHS = ("sd-turbo", "sdxl-turbo", "tiny", "tiny-sdxl")  # what --gpu-arch builds (bench/random_models.py)


def _names(v: object) -> str:
    names = [x.strip() for x in text(v).split(",") if x.strip()]
    for n in names:
        choice(BACKENDS)(n.split(":")[0])
    return ",".join(names)


def _counts(v: object) -> str:
    text(v)
    try:
        counts = [int(x) for x in str(v).split(",")]
    except ValueError:
        raise ValueError(f"expected comma-separated step counts, got {v!r}") from None
    for n in counts:
        integer(1, MAX_STEPS)(n)
    return ",".join(map(str, counts))


@dataclass
class BenchOptions:
    """``dreamwire bench`` options."""

    model: str = setting("tiny", "model to time (tiny, tiny-sdxl, a hub id or a folder)", text)
    size: int = setting(256, "square resolution in pixels", integer(64, 4096))
    backend: str = setting("torch", "engine backend for the engine comparisons", choice(BACKENDS))
    device: str | None = setting(None, "torch device", text, default_doc="cuda when available, else cpu")
    rounds: int = setting(5, "alternating rounds per comparison", integer(1, 1000))
    per_round: int = setting(4, "engine steps per round", integer(1, 1000))
    compare: str | None = setting(None, "also compare whole-engine backends, e.g. torch,onnxruntime (first = "
                                  "baseline)", _names, metavar="B1,B2")
    controlnet: str | None = setting(None, "also time the engine with 1 and 2 of this ControlNet against none "
                                     "(hub id, folder or tiny)", text, metavar="ID")
    overhead: bool = setting(False, "also measure the live loop's overhead over the engine (pattern in, null out)",
                             boolean)
    report: str | None = setting(None, "measure every backend of --backends and write results.json, PNG plots "
                                 "and summary.txt into this folder", text, metavar="DIR")
    gpu: bool = setting(False, "the GPU validation run instead: sd-turbo UNet + TAESD architectures with random "
                        "weights, fp16; correctness checks, then every backend's figures", boolean)
    backends: str | None = setting(None, "backends measured by --report and --gpu", _names, metavar="B1,B2",
                                   default_doc="torch,onnxruntime; with --gpu torch,torch+graphs,compile,tensorrt")
    steps: str = setting("1,2,4", "step counts measured by --report/--gpu", _counts, metavar="N,N")
    frames: int = setting(40, "frames per measurement (--compare, --report, --gpu)", integer(1, 100000))
    finite_frames: int = setting(300, "frames checked for NaN/inf by --gpu", integer(1, 100000))
    gpu_arch: str = setting("sd-turbo", "architecture for --gpu (sdxl-turbo: SDXL's UNet + TAESDXL; tiny, tiny-sdxl: "
                            "the same run in seconds, e.g. on a CPU)",
                            choice(ARCHS))
    fp32: bool = setting(False, "float32 instead of float16 on CUDA", boolean)
    json: bool = setting(False, "print JSON instead of tables", boolean)

    def __post_init__(self) -> None:
        if self.backends is None:
            self.backends = "torch,torch+graphs,compile,tensorrt" if self.gpu else "torch,onnxruntime"
