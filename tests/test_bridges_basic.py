"""The built-in bridges: pattern, images (in and out), video (or its clear missing-extra error), null."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dreamwire.bridges.base import BridgeError, Frame, make_sink, make_source
from dreamwire.bridges.images import ImageFolderSink, ImageFolderSource
from dreamwire.bridges.null import NullSink
from dreamwire.bridges.pattern import PatternSource, parse_pattern, pattern_frame


def test_pattern_is_deterministic_and_moves():
    a, b = PatternSource("64x48@0"), PatternSource("64x48@0")
    a.open()
    b.open()
    fa = [a.read(0.1) for _ in range(3)]
    fb = [b.read(0.1) for _ in range(3)]
    for x, y in zip(fa, fb):
        assert np.array_equal(x.pixels, y.pixels)
    assert fa[0].pixels.shape == (48, 64, 3) and fa[0].layout == "RGB"
    assert not np.array_equal(fa[0].pixels, fa[1].pixels)
    assert [f.frame_id for f in fa] == [0, 1, 2]
    assert fa[0].capture_time <= fa[1].capture_time


def test_pattern_uri_and_pacing():
    assert parse_pattern("") == (None, None, None)
    assert parse_pattern("640x360@25") == (640, 360, 25.0)
    with pytest.raises(BridgeError, match="pattern"):
        parse_pattern("big")
    src = make_source("pattern:32x32@5", width=100, height=100)
    assert (src.width, src.height) == (32, 32)
    src.open()
    assert src.read(0.1) is not None
    assert src.read(0.01) is None  # the next frame is 200 ms away: a short read times out


def test_images_sink_writes_numbered_pngs_and_source_loops_over_them(tmp_path):
    sink = make_sink(f"images:{tmp_path / 'out'}")
    sink.open()
    bgra = np.zeros((20, 30, 4), np.uint8)
    bgra[..., 0] = 255  # blue in BGRA
    bgra[..., 3] = 255
    sink.write(Frame(bgra, "BGRA", 0, time.perf_counter()))
    sink.write(Frame(torch.full((20, 30, 3), 7, dtype=torch.uint8), "RGB", 1, time.perf_counter()))
    sink.close()
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["frame_000000.png", "frame_000001.png"]
    first = np.asarray(Image.open(files[0]))
    assert first.shape == (20, 30, 4) and tuple(first[0, 0]) == (0, 0, 255, 255)
    src = ImageFolderSource(f"{tmp_path / 'out'}@0")
    src.open()
    frames = [src.read(0.1) for _ in range(3)]
    assert [f.frame_id for f in frames] == [0, 1, 2]
    assert frames[0].pixels.shape == (20, 30, 3) and tuple(frames[0].pixels[0, 0]) == (0, 0, 255)
    assert np.array_equal(frames[2].pixels, frames[0].pixels)  # loops


def test_images_errors_are_clear(tmp_path):
    with pytest.raises(BridgeError, match="needs a folder"):
        ImageFolderSink("")
    with pytest.raises(BridgeError, match="not a folder"):
        ImageFolderSource(str(tmp_path / "missing")).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BridgeError, match=r"no \.png"):
        ImageFolderSource(str(tmp_path / "empty")).open()


@pytest.mark.skipif(importlib.util.find_spec("av") is not None, reason="PyAV installed: the error path is moot")
def test_video_without_pyav_names_the_extra(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    with pytest.raises(BridgeError, match=r"dreamwire\[video\]"):
        make_source(f"video:{clip}").open()


def test_video_missing_file_is_clear(tmp_path):
    with pytest.raises(BridgeError, match="no such file"):
        make_source(f"video:{tmp_path / 'nope.mp4'}").open()


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="needs the video extra (PyAV)")
def test_video_round_trip(tmp_path):
    import imageio.v3 as iio

    clip = tmp_path / "clip.mp4"
    iio.imwrite(clip, np.stack([pattern_frame(i, 64, 48) for i in range(5)]), plugin="pyav", codec="libx264",
                fps=10)
    src = make_source(f"video:{clip}@0")
    src.open()
    frames = [src.read(0.1) for _ in range(7)]
    assert frames[0].pixels.shape == (48, 64, 3) and frames[6].frame_id == 6  # looped past the end


def test_null_sink_counts_and_accepts_tensors():
    sink = NullSink()
    sink.open()
    sink.write(Frame(torch.zeros(8, 8, 3, dtype=torch.uint8), "RGB", 0, 0.0))
    sink.write(Frame(np.zeros((8, 8, 4), np.uint8), "BGRA", 1, 0.0))
    assert sink.frames == 2
    with pytest.raises(BridgeError):
        NullSink("x")
