"""Spout bridge logic against a fake SpoutGL 0.1.1 (tests/fakes/spoutgl.py): SpoutGL is Windows-only.

Covers connect, a sender that appears late, resize, disconnect/reconnect,
sender naming, pixel formats, and the clear error off Windows. The real
Spout <-> TouchDesigner check is manual (Windows); see docs/bridges.md.
"""

from __future__ import annotations

import logging
import sys
import threading

import numpy as np
import pytest

from dreamwire.bridges.base import BridgeError, Frame, make_sink, make_source
from dreamwire.bridges.spout import SpoutSink, SpoutSource, list_senders
from tests.fakes.spoutgl import GL_BGR_EXT, GL_RGBA, make_spoutgl


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


def read_until(source: SpoutSource, seconds: float = 1.0) -> Frame | None:
    return source.read(seconds)


@pytest.fixture
def fake():
    return make_spoutgl()


def test_off_windows_without_spoutgl_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "SpoutGL", None)  # import SpoutGL -> ImportError
    with pytest.raises(BridgeError, match=r"Spout needs Windows.*dreamwire\[spout\]"):
        make_source("spout:TD")
    with pytest.raises(BridgeError, match="Windows"):
        make_sink("spout:out")
    with pytest.raises(BridgeError, match="Windows"):
        list_senders()


def test_connect_reads_the_named_sender_in_rgba_and_bgra(fake):
    image = picture(48, 64)
    fake.world.publish("TD out", image)
    fake.world.publish("other", picture(8, 8, seed=1))
    with SpoutSource("TD out", spoutgl=fake) as rgba, SpoutSource("TD out", layout="BGRA", spoutgl=fake) as bgra:
        got = read_until(rgba)
        got_bgra = read_until(bgra)
    assert got is not None and got.layout == "RGBA" and got.size == (48, 64)
    np.testing.assert_array_equal(got.pixels, image)
    assert got_bgra is not None and got_bgra.layout == "BGRA"
    np.testing.assert_array_equal(got_bgra.pixels, image[..., [2, 1, 0, 3]])
    assert got.frame_id == 1 and got.timecode is None and got.sender == "TD out"


def test_receive_follows_the_spoutgl_protocol(fake):
    fake.world.publish("TD", picture(4, 6))
    source = SpoutSource("TD", spoutgl=fake)
    with source:
        assert read_until(source) is not None
        receiver = source._receiver
        assert receiver.gl_ready, "no OpenGL context was created"
        # First call with None; the buffer only after isUpdated() told the size.
        assert receiver.calls[0][1] is None and receiver.calls[-1][1] == "buffer"
        assert receiver.calls[-1][2:] == (GL_RGBA, False, 0)
        # The 0.1.1 quirk: getSenderName is the width. The bridge never trusts it.
        assert receiver.getSenderName() == 6


def test_no_new_frame_reads_none(fake):
    fake.world.publish("TD", picture(4, 4))
    with SpoutSource("TD", spoutgl=fake) as source:
        assert read_until(source) is not None
        assert source.read(0.05) is None
        fake.world.publish("TD", picture(4, 4, seed=2))
        assert read_until(source).frame_id == 2


def test_late_sender_is_waited_for_and_logged_once(fake, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    with SpoutSource("late", spoutgl=fake, retry_interval=0.01) as source:
        assert [source.read(0.03) for _ in range(5)] == [None] * 5
        fake.world.publish("late", picture(16, 16))
        frame = read_until(source)
    assert frame is not None and frame.size == (16, 16)
    assert sum("waiting for Spout sender 'late'" in r.message for r in caplog.records) == 1


def test_resize_reallocates_and_keeps_running(fake):
    fake.world.publish("TD", picture(32, 64))
    with SpoutSource("TD", spoutgl=fake) as source:
        assert read_until(source).size == (32, 64)
        bigger = picture(96, 128, seed=3)
        fake.world.publish("TD", bigger)
        frame = read_until(source)
        assert frame.size == (96, 128)
        np.testing.assert_array_equal(frame.pixels, bigger)
        fake.world.publish("TD", picture(10, 12, seed=4))
        assert read_until(source).size == (10, 12)


def test_sender_closes_and_returns(fake, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    fake.world.publish("TD", picture(8, 8))
    with SpoutSource("TD", spoutgl=fake, retry_interval=0.01) as source:
        assert read_until(source) is not None
        fake.world.close("TD")
        assert [source.read(0.02) for _ in range(5)] == [None] * 5, "a closed sender must read as None"
        back = picture(20, 30, seed=5)
        fake.world.publish("TD", back)
        frame = read_until(source)
    assert frame is not None
    np.testing.assert_array_equal(frame.pixels, back)
    messages = [r.message for r in caplog.records]
    assert sum("lost Spout sender 'TD'" in m for m in messages) == 1
    assert not any("waiting for" in m for m in messages), "a lost sender is reported as lost, once"


def test_empty_name_follows_the_active_sender(fake):
    fake.world.publish("first", picture(4, 4))
    fake.world.publish("second", picture(6, 6))
    with SpoutSource("", spoutgl=fake) as source:
        assert read_until(source).size == (4, 4)


@pytest.mark.parametrize("layout", ["RGBA", "BGRA", "RGB", "BGR"])
def test_sink_sends_every_layout_without_conversion(fake, layout):
    rgba = picture(12, 20, seed=6)
    index = {"RGBA": [0, 1, 2, 3], "BGRA": [2, 1, 0, 3], "RGB": [0, 1, 2], "BGR": [2, 1, 0]}[layout]
    pixels = np.ascontiguousarray(rgba[..., index])
    with SpoutSink("dw", spoutgl=fake) as sink, SpoutSource("dw", spoutgl=fake) as source:
        sink.write(Frame(pixels=pixels, layout=layout, frame_id=1, capture_time=0.0))
        got = read_until(source)
    expected = rgba.copy()
    if len(layout) == 3:
        expected[..., 3] = 255
    np.testing.assert_array_equal(got.pixels, expected)


def test_sink_naming_size_order_and_resize(fake):
    frame = Frame(pixels=np.zeros((10, 30, 3), np.uint8), layout="BGR", frame_id=1, capture_time=0.0)
    with SpoutSink("", spoutgl=fake) as default, SpoutSink("dreamwire", spoutgl=fake) as twin, \
            SpoutSink("VJ out", spoutgl=fake) as named:
        for sink in (default, twin, named):
            sink.write(frame)
        assert sorted(fake.world.senders) == ["VJ out", "dreamwire", "dreamwire_1"]
        assert default._sender.calls[-1] == ("sendImage", 30, 10, GL_BGR_EXT, False, 0)  # width, height
        default.write(Frame(pixels=np.zeros((40, 50, 4), np.uint8), layout="RGBA", frame_id=2, capture_time=0.0))
        assert fake.world.senders["dreamwire"].size == (50, 40)
    assert fake.world.senders == {}, "closing the sinks releases their senders"


def test_sink_accepts_torch_tensors(fake):
    torch = pytest.importorskip("torch")
    with SpoutSink("t", spoutgl=fake) as sink:
        sink.write(Frame(pixels=torch.full((4, 6, 3), 7, dtype=torch.uint8), layout="RGB", frame_id=1,
                         capture_time=0.0))
    # released on close, but the frame went out:
    assert sink._sender is None


def test_bad_frames_and_names_are_clear_errors(fake):
    with pytest.raises(BridgeError, match="at most"):
        SpoutSink("x" * 300, spoutgl=fake)
    with SpoutSink("dw", spoutgl=fake) as sink:
        with pytest.raises(BridgeError, match="layout"):
            sink.write(Frame(pixels=np.zeros((2, 2, 4), np.uint8), layout="ARGB", frame_id=1, capture_time=0.0))
        with pytest.raises(BridgeError, match="shape"):
            sink.write(Frame(pixels=np.zeros((2, 2, 3), np.uint8), layout="RGBA", frame_id=1, capture_time=0.0))
    with pytest.raises(BridgeError, match="before open"):
        SpoutSource("x", spoutgl=fake).read(0.0)


def test_gl_context_stays_on_its_thread(fake):
    fake.world.publish("TD", picture(4, 4))
    with SpoutSource("TD", spoutgl=fake) as source:
        assert read_until(source) is not None
        errors: list[BaseException] = []
        worker = threading.Thread(target=lambda: errors.extend(_catch(lambda: source.read(0.01))))
        worker.start()
        worker.join()
    assert errors and isinstance(errors[0], BridgeError)


def _catch(call) -> list[BaseException]:
    try:
        call()
    except BaseException as exc:  # collected for the assertion above
        return [exc]
    return []


def test_glfw_context_needs_glfw(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "glfw", None)
    with SpoutSink("dw", spoutgl=fake, gl="glfw") as sink, pytest.raises(BridgeError, match="glfw"):
        sink.write(Frame(pixels=np.zeros((2, 2, 4), np.uint8), layout="RGBA", frame_id=1, capture_time=0.0))


def test_list_senders_and_registry_injection(monkeypatch):
    listing = make_spoutgl(with_sender_list=True)
    listing.world.publish("b", picture(2, 2))
    listing.world.publish("a", picture(2, 2))
    monkeypatch.setitem(sys.modules, "SpoutGL", listing)
    assert list_senders() == ["a", "b"]
    source = make_source("spout:a")  # the registry path finds the injected module too
    with source:
        assert source.read(1.0).size == (2, 2)
    with pytest.raises(BridgeError, match="cannot list senders"):
        list_senders(spoutgl=make_spoutgl())
