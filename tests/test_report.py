"""`dreamwire bench --report` and the GPU validation run, end to end on CPU (issue 9 acceptance 4 and 5)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dreamwire.app import cli
from dreamwire.bench.report import PLOTS

pytest.importorskip("matplotlib")

SMALL = ["--size", "64", "--frames", "3", "--rounds", "1", "--per-round", "1"]


def _valid_pngs(folder) -> None:
    for name in PLOTS:
        path = folder / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.verify()  # a complete, uncorrupted PNG
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 200


def test_bench_report_writes_results_and_valid_plots(tmp_path, capsys):
    assert cli.main(["bench", "--report", str(tmp_path), "--backends", "torch,onnxruntime", *SMALL]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["backends"]) == {"torch", "onnxruntime"}
    for r in results["backends"].values():
        assert set(r["fps"]) == {"1", "2", "4"} and all(v > 0 for v in r["fps"].values())
        assert [row["n"] for row in r["stream_vs_sequential"]] == [1, 2, 4]
        assert r["similarity_static"]["skip_fraction"] > r["similarity_moving"]["skip_fraction"]
        assert len(r["latency_ms"]) == 3 and r["loop"]["latency_p99_ms"] >= r["loop"]["latency_p50_ms"] > 0
    _valid_pngs(tmp_path)
    summary = (tmp_path / "summary.txt").read_text()
    assert "torch:" in summary and "onnxruntime:" in summary
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_validation_runs_end_to_end_on_cpu(tmp_path):
    """The script a GPU machine runs, on the tiny architecture: every check runs and passes, plots are written."""
    rc = cli.main(["bench", "--gpu", "--gpu-arch", "tiny", "--device", "cpu", "--backends", "torch,onnxruntime",
                   "--finite-frames", "6", "--report", str(tmp_path), *SMALL])
    results = json.loads((tmp_path / "results.json").read_text())
    assert rc == 0 and results["ok"], results["checks"]
    assert {"fp16_vs_fp32", "finite_outputs", "timer_survives_failure", "onnxruntime_vs_torch",
            "no_capture_after_ready_torch", "no_capture_after_ready_onnxruntime"} <= set(results["checks"])
    assert results["checks"]["onnxruntime_vs_torch"]["rel_max_diff"] < 1e-3
    for r in results["backends"].values():
        assert {"encode", "unet", "decode", "upload_and_convert", "convert_and_download"} <= set(r["ms_per_call"])
    _valid_pngs(tmp_path)
    assert "ALL CHECKS PASS" in (tmp_path / "summary.txt").read_text()


def test_gpu_validation_without_cuda_says_how_to_run_it_on_cpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli.main(["bench", "--gpu"]) == 2
    assert "--device cpu --gpu-arch tiny" in capsys.readouterr().err
