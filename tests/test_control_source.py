"""``--control-source``: control images from a second source, paired with the input frames.

Pairing rule (runtime/live/controlnet_feed.py): the latest control frame at the moment the input frame
is taken; an on-demand source is read once per input frame, so frame k pairs with control frame k.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamwire.bridges.base import Frame
from dreamwire.bridges.pattern import PatternSource, pattern_frame
from dreamwire.engine.controlnet import ControlNetSetup
from dreamwire.live.controlnet_feed import ControlNetFeed, controlnet_routes
from dreamwire.live.imageops import to_model_input
from tests.fakes.bridges import OnDemand, QueueSource

SIZE = (64, 64)


def _frame(k: int, value: int | None = None) -> Frame:
    px = np.full((*SIZE, 3), value, np.uint8) if value is not None else pattern_frame(k, *SIZE)
    return Frame(px, "RGB", k, time.perf_counter())


def _expected(pixels: np.ndarray) -> torch.Tensor:
    """What passthrough makes of a control frame: the frame in [0, 1]."""
    return (to_model_input(torch.from_numpy(pixels), "RGB", SIZE, "cpu", torch.float32) + 1) / 2


def test_routes_are_one_for_all_or_one_per_controlnet():
    assert controlnet_routes((), 2) == ("input", "input")
    assert controlnet_routes(("ndi:depth",), 2) == ("ndi:depth", "ndi:depth")
    assert controlnet_routes(("ndi:depth", "input"), 2) == ("ndi:depth", "input")
    with pytest.raises(ValueError, match="2 given for 3 ControlNets"):
        controlnet_routes(("a", "b"), 3)
    with pytest.raises(ValueError, match="needs at least one --controlnet"):
        controlnet_routes(("pattern",), 0)


def test_on_demand_source_pairs_frame_k_with_control_frame_k():
    src = PatternSource(f"{SIZE[1]}x{SIZE[0]}@0")
    src.open()
    setups = [ControlNetSetup("passthrough"), ControlNetSetup("canny")]
    feed = ControlNetFeed(("pattern", "input"), {"pattern": src}, setups).start()
    inputs = [_frame(100 + k, value=10 * k) for k in range(3)]
    for f in inputs:
        feed.mark(f)
    got = feed.images(inputs[1:], SIZE, torch.device("cpu"), torch.float32)
    assert got[1] is None  # the second ControlNet preprocesses the input frame, in the engine
    want = torch.cat([_expected(pattern_frame(k, SIZE[1], SIZE[0])) for k in (1, 2)])
    torch.testing.assert_close(got[0], want)
    feed.close()




def _wait_for(feed: ControlNetFeed, uri: str, frame: Frame) -> None:
    deadline = time.perf_counter() + 10
    while feed.feeds[uri].latest is not frame and time.perf_counter() < deadline:
        time.sleep(0.001)
    assert feed.feeds[uri].latest is frame


def test_live_source_gives_the_latest_control_frame_when_the_input_is_taken(caplog):
    live = QueueSource()
    feed = ControlNetFeed(("ndi:depth",), {"ndi:depth": live}, [ControlNetSetup("passthrough")], 0.01).start()
    first = _frame(0)
    with caplog.at_level(logging.WARNING):
        feed.mark(first)  # nothing sent yet: black
    a, b, c = _frame(1, 50), _frame(2, 120), _frame(3, 200)
    second, third = _frame(1), _frame(2)
    live.q.put(a)
    _wait_for(feed, "ndi:depth", a)
    feed.mark(second)
    live.q.put(b)
    live.q.put(c)  # b is never the latest when an input frame is taken: it is replaced unseen
    _wait_for(feed, "ndi:depth", c)
    feed.mark(third)
    got = feed.images([first, second, third], SIZE, torch.device("cpu"), torch.float32)[0]
    torch.testing.assert_close(got, torch.cat([torch.zeros(1, 3, *SIZE), _expected(a.pixels), _expected(c.pixels)]))
    assert "has sent no frame yet" in caplog.text
    feed.close()
    assert live.closed


def _folder(path: Path, seed: int, count: int = 3) -> Path:
    path.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path / f"{k:03d}.png")
    return path


def _run(tmp_path: Path, name: str, source: Path, control: str) -> list[np.ndarray]:
    out = tmp_path / name
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--model", "tiny", "--device", "cpu",
                        "--backend", "torch", "--source", f"images:{source}@0", "--sink", f"images:{out}",
                        "--frames", "3", "--width", "64", "--height", "64", "--controlnet", "tiny",
                        "--control-image", "passthrough", "--control-source", control],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]


def test_run_with_a_control_source_folder(tmp_path):
    """The real command with an image folder as the control source runs to the end."""
    inputs, other = _folder(tmp_path / "in", 1), _folder(tmp_path / "other", 2)
    assert len(_run(tmp_path, "out", inputs, f"images:{other}@0")) == 3


@pytest.fixture(scope="module")
def cn_parts(tiny_dir):
    import dataclasses

    from dreamwire.models.controlnet import load_controlnets
    from dreamwire.models.load import load_model
    from dreamwire.models.sources import ControlNetSource

    parts = load_model(str(tiny_dir), device="cpu", dtype=torch.float32)
    nets = load_controlnets((ControlNetSource("tiny"),), parts.unet)
    return dataclasses.replace(parts, controlnets=nets, controlnet_sources=("tiny",))


class Latents:
    """The backend, recording the latents each decode gets (the decoded tiny-model frames are near-saturated,
    so the comparison is made before the VAE)."""

    def __init__(self, backend) -> None:
        self.backend, self.latents = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def decode(self, latents):
        self.latents.append(latents.clone())
        return self.backend.decode(latents)




@pytest.mark.parametrize("frames", [1, 2])
def test_loop_feeds_each_frame_its_own_control_frame(cn_parts, prompt_encoder, frames):
    """In the live loop, frame k is denoised with control frame k: the outputs equal direct engine
    steps given those control images, and differ from control images made from the input frames."""
    from dreamwire.backends.torch_eager import TorchBackend
    from dreamwire.control.params import Params
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine
    from dreamwire.live.loop import FrameLoop
    from dreamwire.live.options import LoopOptions
    from dreamwire.live.state import ParamState
    from tests.fakes.bridges import ListSource, RecordingSink

    torch_backend, params = TorchBackend(cn_parts), Params({"steps": 2})

    def engine():
        config = EngineConfig(width=64, height=64, frames=frames)
        return StreamEngine(Latents(torch_backend), prompt_encoder, cn_parts.spec, config, params,
                            controlnets=[ControlNetSetup("passthrough")])

    count = 4
    inputs = [_frame(k, value=40 * k + 20) for k in range(count)]
    controls = [_frame(k) for k in range(count)]
    ctl = OnDemand()
    for f in controls:
        ctl.q.put(f)
    live = engine()
    feed = ControlNetFeed(("ctl",), {"ctl": ctl}, live.controlnets).start()
    loop = FrameLoop(live, ListSource(inputs), RecordingSink(), ParamState(params), LoopOptions(max_frames=count),
                     controlnet_feed=feed).start()
    assert loop.wait(120)
    loop.stop()
    feed.close()

    def direct(control_of):
        ref = engine()
        for k in range(0, count, frames):
            x = torch.cat([to_model_input(torch.from_numpy(f.pixels), "RGB", SIZE, "cpu", torch.float32)
                           for f in inputs[k:k + frames]])
            ref.step(x, controlnet_images=control_of(k))
        return ref.backend.latents

    paired = direct(lambda k: [torch.cat([_expected(c.pixels) for c in controls[k:k + frames]])])
    from_input = direct(lambda k: None)
    assert len(live.backend.latents) == len(paired) == count // frames
    for got, want, other in zip(live.backend.latents, paired, from_input):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        assert (got - other).abs().max() > 100 * 1e-6


def test_bad_control_source_is_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--model", "tiny", "--sink", "null",
                        "--controlnet", "tiny", "--control-source", f"images:{tmp_path / 'missing'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("dreamwire: error: images:"), r.stderr
