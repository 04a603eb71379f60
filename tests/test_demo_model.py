"""The built-in demo model: the default `dreamwire run` shows the input, answers the prompt, and ships small."""

from __future__ import annotations

import signal
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamwire.app import cli
from dreamwire.app.config import RuntimeConfig
from dreamwire.bridges.pattern import pattern_frame
from dreamwire.models.demo import DEMO, DEMO_SUMMARY, demo_model_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 8 * 1024 * 1024
FRAMES = 8


@pytest.fixture
def keep_signal_handlers():
    """`dreamwire run` installs its own SIGINT/SIGTERM handlers; give pytest its own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _run_default(tmp_path: Path, prompt: str) -> list[np.ndarray]:
    """`dreamwire run` with no --model on the default pattern (unpaced, so no frame is dropped)."""
    out = tmp_path / prompt.replace(" ", "_")
    rc = cli.main(["run", "--source", "pattern:@0", "--sink", f"images:{out}", "--frames", str(FRAMES),
                   "--prompt", prompt, "--osc-port", "0", "--telemetry", "off", "--log-level", "warning"])
    assert rc == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == FRAMES
    return [np.asarray(Image.open(f).convert("RGB"), dtype=np.float64) for f in files]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_the_default_run_follows_the_input_and_answers_the_prompt(tmp_path, capsys, keep_signal_handlers):
    """Issue 18.1: PSNR(output, input) >= 15 dB; "red" vs "blue" moves mean(R - B) by >= 20/255."""
    assert RuntimeConfig().model == DEMO
    red, blue = _run_default(tmp_path, "red"), _run_default(tmp_path, "blue")
    assert DEMO_SUMMARY in capsys.readouterr().err
    # Two steps (the default) put output k at input frame k - 1 (the stream's latency, primed from frame 0);
    # the pattern comes at the engine's size, so outputs and inputs are the same size.
    h, w = red[0].shape[:2]
    inputs = [pattern_frame(max(0, k - 1), w, h).astype(np.float64) for k in range(FRAMES)]
    psnr = {name: [_psnr(o, i) for o, i in zip(outs, inputs)] for name, outs in (("red", red), ("blue", blue))}
    shift = np.mean([(r[..., 0] - r[..., 2]).mean() - (b[..., 0] - b[..., 2]).mean() for r, b in zip(red, blue)])
    print(f"demo model: PSNR(output, input) min red {min(psnr['red']):.2f} dB, blue {min(psnr['blue']):.2f} dB; "
          f"mean(R-B) red minus blue {shift:.1f}/255")  # the figures of issue 18.1 (pytest -s)
    assert min(psnr["red"]) >= 15.0 and min(psnr["blue"]) >= 15.0, psnr
    assert shift >= 20.0, shift
    # the moving pattern made it through: the last output is nearer its own input than the first input
    assert _psnr(red[-1], inputs[-1]) > _psnr(red[-1], inputs[0])
    assert _psnr(blue[-1], inputs[-1]) > _psnr(blue[-1], inputs[0])


def _shipped(pattern_root: Path) -> set[Path]:
    """Files under ``dreamwire.models`` that pyproject's package-data globs put in a wheel."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]["dreamwire.models"]
    files = [p for p in pattern_root.rglob("*") if p.is_file()]
    return {p for p in files if any(fnmatch(p.relative_to(pattern_root).as_posix(), g) for g in globs)}


def test_the_demo_model_ships_as_package_data_under_8_mb():
    folder = demo_model_dir()
    files = {p for p in folder.rglob("*") if p.is_file()}
    assert {p.name for p in files} >= {"model_index.json", "diffusion_pytorch_model.safetensors", "model.safetensors",
                                       "vocab.json", "merges.txt", "scheduler_config.json"}
    assert _shipped(folder.parent) >= files  # every file of the folder is declared package data
    size = sum(p.stat().st_size for p in files)
    assert size <= MAX_BYTES, f"{size / 2**20:.2f} MiB"


def test_every_demo_word_is_one_token(tmp_path):
    from transformers import CLIPTokenizer

    from dreamwire.models.train_demo import vocabulary, write_tokenizer

    write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    assert {w: tok.tokenize(w) for w in vocabulary()} == {w: [f"{w}</w>"] for w in vocabulary()}
    assert tok.tokenize("a bluish sq") != ["a</w>", "blue</w>"]  # unknown words fall back to bytes


def test_the_training_script_writes_a_folder_the_loader_reads(tmp_path, no_network):
    from dreamwire.models.load import load_model
    from dreamwire.models.train_demo import main

    assert main(["--out", str(tmp_path / "m"), "--vae-steps", "1", "--unet-steps", "1", "--vae-batch", "2",
                 "--batch", "2", "--vae-size", "16", "--size", "32"]) == 0
    parts = load_model(str(tmp_path / "m"))
    assert parts.spec.kind == "lcm" and parts.spec.vae_scaling_factor > 1.0
