"""Bad ControlNets on the real command: one clear error line on stderr, no traceback, exit 2.

Black-box, as a user meets them: ``python -m dreamwire run --model tiny --controlnet X``
in a subprocess. The misfits are real diffusers ControlNet folders built here, so the
check that rejects them is the loader's, not a guess about a config file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SMALL = {"layers_per_block": 2, "in_channels": 4, "norm_num_groups": 8,
         "conditioning_embedding_out_channels": (8, 16, 32, 32),
         "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D")}


def _save(folder: Path, **config) -> Path:
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ControlNetModel(**{**SMALL, **config}).save_pretrained(folder)
    return folder


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamwire", "run", "--model", "tiny", "--source", "pattern",
                           "--sink", "null", "--frames", "1", "--backend", "torch", "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith("dreamwire: error: "), r.stderr
    return errors[0]


def test_missing_controlnet_folder(tmp_path):
    missing = tmp_path / "no-such-controlnet"
    line = _one_error_line(_run("--controlnet", str(missing)))
    assert str(missing) in line and "ControlNet" in line


@pytest.mark.parametrize("config, field", [
    ({"block_out_channels": (16, 32), "cross_attention_dim": 32}, "block_out_channels"),
    ({"block_out_channels": (32, 64), "cross_attention_dim": 24}, "cross_attention_dim"),
])
def test_controlnet_with_other_channels(tmp_path, config, field):
    net = _save(tmp_path / "misfit", **config)
    line = _one_error_line(_run("--controlnet", f"{net}:0.5"))
    assert "does not fit" in line and field in line, line


def test_sdxl_controlnet_on_an_sd_model(tmp_path):
    net = _save(tmp_path / "sdxl-cn", block_out_channels=(32, 64), cross_attention_dim=32,
                addition_embed_type="text_time", addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=6 * 8 + 32)
    line = _one_error_line(_run("--controlnet", str(net)))
    assert "SDXL ControlNet" in line, line


def test_a_fitting_controlnet_runs(tmp_path):
    """The same command with the built-in ControlNet succeeds, so the failures above come from the misfits."""
    r = _run("--controlnet", "tiny", "--width", "64", "--height", "64")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("routes, refused", [
    ((), "tiny"),  # the default control source is the input
    (("--control-source", "input"), "tiny"),
])
def test_txt2img_with_a_controlnet_fed_from_the_input_is_refused_at_start(routes, refused):
    """txt2img gives the engine no input frame to preprocess: refuse before start, not fail every step."""
    line = _one_error_line(_run("--mode", "txt2img", "--controlnet", "tiny", *routes))
    assert "txt2img" in line and f"--controlnet {refused}" in line and "--control-source" in line, line


def test_txt2img_refusal_names_only_the_controlnets_fed_from_the_input(tmp_path):
    line = _one_error_line(_run("--mode", "txt2img", "--controlnet", "tiny:0.5", "--controlnet", "tiny:0.7",
                                "--control-source", "pattern:64x64@0", "--control-source", "input"))
    assert "--controlnet tiny cannot" in line and "tiny, tiny" not in line, line


def test_txt2img_with_a_controlnet_fed_from_a_second_source_runs():
    """The refusal is about the input route only: a second control source makes the same start work."""
    r = _run("--mode", "txt2img", "--controlnet", "tiny", "--control-source", "pattern:64x64@0",
             "--width", "64", "--height", "64", "--frames", "2")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "engine step failed" not in r.stderr, r.stderr
