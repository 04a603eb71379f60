"""`dreamwire run` as a user starts it: a subprocess, steered over real OSC on loopback, stopped by a signal."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamwire.bridges.pattern import pattern_frame
from tests.fakes.runtime import Client, free_port, run_log, start_run, stop_run

pytestmark = pytest.mark.slow












def test_status_prompt_and_sigint(tmp_path):
    """Acceptance 1: run --model tiny --source pattern --sink null --osc-port P; status, prompt, SIGINT."""
    port = free_port()
    proc = start_run(tmp_path, "--model", "tiny", "--source", "pattern", "--sink", "null", "--osc-port", str(port))
    client = Client(port)
    try:
        state = client.status(timeout=120)
        assert state["/dreamwire/state/prompt"] != ["a lighthouse in a storm"]
        assert {"/dreamwire/stats/fps", "/dreamwire/stats/latency_ms"} <= set(state)
        client.send("/dreamwire/prompt", "a lighthouse in a storm")
        client.send("/dreamwire/strength", 0.8)
        deadline = time.perf_counter() + 30
        while True:
            st = client.status(30)
            if st["/dreamwire/state/prompt"] == ["a lighthouse in a storm"] and \
                    abs(st["/dreamwire/state/strength"][0] - 0.8) < 1e-6:
                break
            assert time.perf_counter() < deadline, "prompt/strength change not reflected in status"
            time.sleep(0.2)
    finally:
        client.close()
        if proc.poll() is None:
            stop_run(proc, tmp_path)
    assert "OSC on 127.0.0.1:" in run_log(tmp_path)


def test_frames_20_writes_20_images(tmp_path):
    """Acceptance 1: run --model tiny --source pattern --sink images:DIR --frames 20 writes 20 images, exit 0."""
    out = tmp_path / "out"
    proc = start_run(tmp_path, "--model", "tiny", "--source", "pattern", "--sink", f"images:{out}", "--frames", "20",
                  "--osc-port", "0", "--telemetry", "off")
    rc = proc.wait(timeout=300)
    assert rc == 0, run_log(tmp_path)
    assert len(list(out.glob("frame_*.png"))) == 20
    assert str(out) in run_log(tmp_path)  # says where to look


def _frames(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("frame_*.png"))
    return [np.asarray(Image.open(f)) for f in files]


def test_osc_changes_prompt_and_strength_mid_run(tmp_path):
    """Acceptance 2: outputs before and after an OSC change differ, and the status reply shows the new values.

    The input is one still picture (the pattern's frame 3) so that, before the change, every output is the
    same: any difference afterwards comes from the change, not from a moving input.
    """
    still = tmp_path / "still"
    still.mkdir()
    Image.fromarray(pattern_frame(3, 96, 80)).save(still / "a.png")
    out = tmp_path / "out"
    port = free_port()
    proc = start_run(tmp_path, "--model", "tiny", "--source", f"images:{still}@20", "--sink", f"images:{out}",
                  "--width", "64", "--height", "64", "--osc-port", str(port), "--telemetry", "off", "--report")
    client = Client(port)
    try:
        client.status(timeout=120)
        deadline = time.perf_counter() + 60
        while len(list(out.glob("frame_*.png"))) < 5:
            assert time.perf_counter() < deadline and proc.poll() is None, run_log(tmp_path)
            time.sleep(0.1)
        before = _frames(out)
        client.send("/dreamwire/prompt", "neon jellyfish")
        client.send("/dreamwire/strength", 0.9)
        deadline = time.perf_counter() + 30
        while True:
            st = client.status(30)
            strength = st["/dreamwire/state/strength"][0]
            if st["/dreamwire/state/prompt"] == ["neon jellyfish"] and abs(strength - 0.9) < 1e-6:
                break
            assert time.perf_counter() < deadline, st
        n = len(list(out.glob("frame_*.png")))
        while len(list(out.glob("frame_*.png"))) < n + 5:
            assert time.perf_counter() < deadline + 30 and proc.poll() is None, run_log(tmp_path)
            time.sleep(0.1)
    finally:
        client.close()
        if proc.poll() is None:
            stop_run(proc, tmp_path, signal.SIGTERM)  # a service manager's stop: same clean exit 0
    assert "pipeline overhead" in run_log(tmp_path)  # --report
    after = _frames(out)[-1]
    assert before[0].shape == (80, 96, 3)  # resized back to the input's size
    assert all(np.array_equal(f, before[-1]) for f in before[1:])  # a still input gives a still output
    # the tiny model is random-weight and mostly dark, so the change is small but never zero
    assert not np.array_equal(after, before[-1])
    assert np.abs(after.astype(int) - before[-1].astype(int)).mean() > 0.1
