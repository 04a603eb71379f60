"""Spout bridge logic against a fake SpoutGL 0.1.1 (tests/fakes/spoutgl.py): SpoutGL is Windows-only.

The fake reproduces SpoutGL 0.1.1's defaults (frame counting off, so every
read looks "new"; buffers left untouched on old frames when counting is on;
sizes checked against the sender; B8G8R8A8 senders), with file:line sources
in its docstring. Frame rates are counted on a fake clock (the bridge module's
``time`` is swapped for it), so the figures do not depend on machine load.
The real Spout <-> TouchDesigner check is manual (Windows); see docs/bridges.md.
"""

from __future__ import annotations

import logging
import sys
import threading
import types

import numpy as np
import pytest

from dreamwire.bridges import _glcontext, spout
from dreamwire.bridges.base import BridgeError, Frame, make_sink, make_source
from dreamwire.bridges.spout import SpoutSink, SpoutSource, list_senders
from tests.fakes.spoutgl import (
    DXGI_R8G8B8A8,
    GL_BGR_EXT,
    GL_BGRA_EXT,
    GL_RGBA,
    FakeClock,
    frame_number,
    make_spoutgl,
    stamp,
)


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


def as_rgba(frame: Frame) -> np.ndarray:
    return frame.pixels if frame.layout == "RGBA" else frame.pixels[..., [2, 1, 0, 3]]


@pytest.fixture
def fake():
    return make_spoutgl()


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for the bridge module and the fake Spout world alike."""
    fake_clock = FakeClock()
    monkeypatch.setattr(spout, "time", fake_clock)
    return fake_clock


def frames_over(source: SpoutSource, clock: FakeClock, seconds: float) -> list[Frame]:
    """What the loop would get calling ``read(0.1)`` for ``seconds`` of (fake) time."""
    frames, end = [], clock.now + seconds
    for _ in range(100_000):  # a bound, should a read never let the clock move
        if clock.now >= end:
            break
        frame = source.read(0.1)
        if frame is not None:
            frames.append(frame)
    return frames


def test_off_windows_without_spoutgl_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "SpoutGL", None)  # import SpoutGL -> ImportError
    with pytest.raises(BridgeError, match=r"Spout needs Windows.*dreamwire\[spout\]"):
        make_source("spout:TD")
    with pytest.raises(BridgeError, match="Windows"):
        make_sink("spout:out")
    with pytest.raises(BridgeError, match="Windows"):
        list_senders()


# --- new frames: what a 30 fps sender yields ------------------------------------------------------------


@pytest.mark.parametrize(("world", "sender"), [
    ({}, {}),  # Spout's default: no Framecount registry value, counting off, every read is "new"
    ({"frame_count": True}, {"counts": False}),  # counting on, but the sender does not count (frame 0)
])
def test_30fps_sender_yields_30_frames_a_second_without_frame_counting(clock, world, sender):
    fake = make_spoutgl(clock, **world)
    fake.world.start("TD", fps=30, **sender)
    with SpoutSource("TD", spoutgl=fake) as source:
        frames_over(source, clock, 1.0)  # connect and settle
        readbacks = fake.world.readbacks
        frames = frames_over(source, clock, 10.0)
    numbers = [frame_number(as_rgba(f)) for f in frames]
    assert 298 <= len(frames) <= 302, f"{len(frames)} frames in 10 s from a 30 fps sender"
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "frames repeated or skipped"
    per_frame = (fake.world.readbacks - readbacks) / len(frames)
    assert per_frame < 4.5, f"{per_frame:.1f} texture readbacks per frame (polling every 4 ms would be 8)"


def test_frame_counting_on_delivers_each_counted_frame_and_copies_only_those(clock):
    fake = make_spoutgl(clock, frame_count=True)
    fake.world.start("TD", fps=30)  # a sender made with counting on counts its frames
    with SpoutSource("TD", spoutgl=fake) as source:
        frames_over(source, clock, 1.0)
        readbacks = fake.world.readbacks
        frames = frames_over(source, clock, 10.0)
        assert source._receiver.getSenderFrame() > 300
    assert 298 <= len(frames) <= 302
    assert fake.world.readbacks - readbacks == len(frames), "Spout copies pixels only for new frames"


def test_a_sender_that_signals_frames_is_waited_for_instead_of_polled(clock):
    fake = make_spoutgl(clock)
    fake.world.start("TD", fps=30, sync=True)  # the sender calls setFrameSync after each frame
    with SpoutSource("TD", spoutgl=fake) as source:
        frames_over(source, clock, 1.0)
        calls = len(source._receiver.calls)
        frames = frames_over(source, clock, 10.0)
        reads = len(source._receiver.calls) - calls
    assert 298 <= len(frames) <= 302
    assert reads <= len(frames) + 2, f"{reads} receiveImage calls for {len(frames)} frames"


def test_a_still_picture_is_repeated_every_still_interval_not_every_poll(clock):
    fake = make_spoutgl(clock)
    fake.world.publish("still", picture(4, 4))
    with SpoutSource("still", spoutgl=fake, still_interval=0.1) as source:
        frames = frames_over(source, clock, 5.0)
    with SpoutSource("still", spoutgl=fake, still_interval=None) as source:
        once = frames_over(source, clock, 2.0)
    assert 48 <= len(frames) <= 51, f"{len(frames)} frames of one still picture in 5 s"
    assert len(once) == 1
    np.testing.assert_array_equal(as_rgba(once[0]), fake.world.senders["still"].rgba)


# --- Spout's PBO readback: one read late, nothing on the first read after a connect ------------------------


def produced(sender, number: int, fps: float = 30.0) -> float:
    """When a clocked fake sender made frame ``number`` (frames are 1, 2, ... from ``started``)."""
    return sender.started + (number - 1) / fps


@pytest.mark.parametrize("world", [{}, {"frame_count": True}, {"frame_count": True, "buffering": False},
                                   {"pbo_buffers": 3}, {"frame_count": True, "pbo_buffers": 4}])
def test_no_black_frame_at_connect_or_resize_and_frames_dated_by_the_read_that_copied_them(clock, world):
    fake = make_spoutgl(clock, **world)
    sender = fake.world.start("TD", fps=30)
    with SpoutSource("TD", spoutgl=fake) as source:
        before = frames_over(source, clock, 1.0)
        sender.rgba = stamp(sender.frame, 12, 20)  # the sender resizes
        after = frames_over(source, clock, 1.0)
        sender.fps, last = None, sender.frame  # and pauses: its last frame must still arrive
        paused = frames_over(source, clock, 0.5)
    frames = before + after + paused
    assert not [f.frame_id for f in frames if not f.pixels.any()], "a black frame was delivered"
    assert after and all(f.size == (12, 20) for f in after + paused)
    for i, frame in enumerate(frames):
        number = frame_number(as_rgba(frame))
        made = produced(sender, number)
        assert made <= frame.capture_time, f"frame {number} dated before it was made"
        assert i >= len(before + after) or frame.capture_time < produced(sender, number + 1), \
            f"frame {number} dated {frame.capture_time - made:.4f} s after it was made: later than the next frame"
    numbers = [frame_number(as_rgba(f)) for f in frames]
    assert numbers == sorted(numbers) and len(before) >= 25
    if not (world.get("frame_count") and world.get("buffering", True)):
        assert last in numbers, "the last frame before the pause never arrived"


def test_counting_with_buffering_says_why_a_paused_senders_frame_waits_and_without_it_reads_at_once(clock, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    held = make_spoutgl(clock, frame_count=True)
    held.world.publish("still", picture(4, 4))  # one frame, then nothing: TouchDesigner paused
    with SpoutSource("still", spoutgl=held, still_interval=None) as source:
        got = frames_over(source, clock, 1.0)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert got == [], "Spout never maps the PBO holding the only frame; no black frame instead of it"
    assert len(warnings) == 1 and "Buffering off in SpoutSettings" in warnings[0]

    direct = make_spoutgl(clock, frame_count=True, buffering=False)
    direct.world.publish("still", picture(4, 4, seed=3))
    with SpoutSource("still", spoutgl=direct, still_interval=None) as source:
        got = frames_over(source, clock, 1.0)
    assert len(got) == 1
    np.testing.assert_array_equal(as_rgba(got[0]), direct.world.senders["still"].rgba)


# --- Spout reads that copy nothing, and BGRA that is not ---------------------------------------------------


@pytest.mark.parametrize("gldx_ready", [True, False])
def test_a_failed_interop_is_reported_once_instead_of_delivering_black(clock, caplog, gldx_ready):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    fake = make_spoutgl(clock, interop_fails=True, gldx_ready=gldx_ready)
    fake.world.publish("TD", picture(8, 8))
    with SpoutSource("TD", spoutgl=fake) as source:
        nothing = frames_over(source, clock, 2.0)
        errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
        fake.world.interop_fails = False  # the user fixed the GPU setting and restarted the sender
        fake.world.close("TD")
        fake.world.publish("TD", picture(8, 8, seed=4))
        back = frames_over(source, clock, 1.0)
    assert nothing == [], f"{len(nothing)} frames of nothing delivered"
    assert len(errors) == 1 and f"isGLDXReady()={gldx_ready}" in errors[0]
    assert "same GPU" in errors[0] and "python_diagnostics.log" in errors[0]
    assert back, "frames come once the interop works"
    np.testing.assert_array_equal(as_rgba(back[0]), fake.world.senders["TD"].rgba)


@pytest.mark.parametrize("layout", ["auto", "RGBA", "BGRA"])
def test_without_gl_ext_bgra_frames_are_labelled_as_spout_really_reads_them(layout, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    fake = make_spoutgl(gl_extensions=frozenset({"GL_ARB_pixel_buffer_object"}))
    rgba = picture(6, 10, seed=8)
    fake.world.publish("TD", rgba)  # a B8G8R8A8 sender, Spout's default
    with SpoutSource("TD", layout=layout, spoutgl=fake, extensions=lambda: fake.world.gl_extensions) as source:
        frame = source.read(1.0)
        gl_format = source._receiver.calls[-1][2]
    np.testing.assert_array_equal(as_rgba(frame), rgba, err_msg="red and blue swapped")
    assert frame.layout == ("RGBA" if layout == "auto" else layout) and gl_format == GL_RGBA
    assert sum("GL_EXT_bgra" in r.message for r in caplog.records) == 1


# --- byte order --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("swapping_driver", [False, True])
@pytest.mark.parametrize("dxgi_format", [87, 88, 21, DXGI_R8G8B8A8])
def test_colour_order_follows_the_senders_format(swapping_driver, dxgi_format):
    fake = make_spoutgl(driver_swaps_bgra=swapping_driver)
    rgba = picture(6, 10, seed=9)
    reported = 87 if dxgi_format == 21 else dxgi_format  # Spout reports DX9 A8R8G8B8 as B8G8R8A8
    fake.world.publish("TD", rgba, dxgi_format=reported)
    with SpoutSource("TD", spoutgl=fake) as default, SpoutSource("TD", layout="RGBA", spoutgl=fake) as rgb_a, \
            SpoutSource("TD", layout="BGRA", spoutgl=fake) as bgr_a:
        got = [s.read(1.0) for s in (default, rgb_a, bgr_a)]
        gl_format = default._receiver.calls[-1][2]
    native = "RGBA" if dxgi_format == DXGI_R8G8B8A8 else "BGRA"
    for frame in got:
        np.testing.assert_array_equal(as_rgba(frame), rgba, err_msg=f"{frame.layout} frame has the wrong colours")
    assert [f.layout for f in got] == [native, "RGBA", "BGRA"]
    assert gl_format == (GL_RGBA if native == "RGBA" else GL_BGRA_EXT), "read in the sender's own byte order"


# --- the fake itself keeps SpoutGL 0.1.1's defaults ----------------------------------------------------------


def test_fake_has_spoutgl_defaults():
    fake = make_spoutgl()
    fake.world.publish("TD", picture(2, 3))
    receiver = fake.SpoutReceiver()
    receiver.setReceiverName("TD")
    assert receiver.receiveImage(None, GL_RGBA, False, 0) is False, "no OpenGL context on this thread"
    receiver.createOpenGL()
    assert receiver.receiveImage(None, GL_RGBA, False, 0) is True and receiver.isUpdated()
    assert receiver.receiveImage(None, GL_RGBA, False, 0) is False, "None means: no pixels, wait for details"
    with pytest.raises(BufferError):
        receiver.receiveImage(np.zeros((2, 2, 4), np.uint8), GL_RGBA, False, 0)
    buffer = np.zeros((2, 3, 4), np.uint8)
    assert receiver.receiveImage(buffer, GL_RGBA, False, 0)
    assert not buffer.any(), "the first read after a connect maps an empty PBO: buffer untouched"
    assert receiver.receiveImage(buffer, GL_RGBA, False, 0)
    np.testing.assert_array_equal(buffer, fake.world.senders["TD"].rgba)
    assert (fake.world.buffering, fake.world.pbo_buffers, receiver.isGLDXReady()) == (True, 2, True)
    assert (receiver.isFrameCountEnabled(), receiver.isFrameNew(), receiver.getSenderFrame()) == (False, True, 0)
    assert receiver.getSenderFormat() == 87 and receiver.getSenderName() == 3  # the 0.1.1 binding bug
    assert receiver.waitFrameSync("TD", 1000) is True, "no sync event: returns at once"
    receiver.releaseReceiver()
    receiver.closeOpenGL()

    counting = make_spoutgl(frame_count=True)
    counting.world.publish("TD", picture(2, 3))
    receiver = counting.SpoutReceiver()
    receiver.createOpenGL()
    receiver.setReceiverName("TD")
    receiver.receiveImage(None, GL_RGBA, False, 0)
    receiver.isUpdated()
    assert receiver.receiveImage(buffer, GL_RGBA, False, 0) and receiver.isFrameNew()
    counting.world.publish("TD", picture(2, 3, seed=1))
    assert receiver.receiveImage(buffer, GL_RGBA, False, 0) and receiver.isFrameNew()
    buffer[...] = 7
    assert receiver.receiveImage(buffer, GL_RGBA, False, 0) and not receiver.isFrameNew()
    assert (buffer == 7).all(), "an old frame leaves the buffer untouched"
    receiver.closeOpenGL()


# --- connecting, resizing, losing ------------------------------------------------------------------------


def test_connect_reads_the_named_sender_and_follows_the_protocol(fake):
    image = picture(48, 64)
    fake.world.publish("TD out", image)
    fake.world.publish("other", picture(8, 8, seed=1))
    with SpoutSource("TD out", spoutgl=fake) as source:
        got = source.read(1.0)
        receiver = source._receiver
        assert fake.world.has_gl(), "no OpenGL context was made current on this thread"
        # First call with None; the buffer only after isUpdated() told the size.
        assert receiver.calls[0][1] is None and receiver.calls[-1][1] == "buffer"
        assert receiver.calls[-1][2:] == (GL_BGRA_EXT, False, 0)
    assert not fake.world.has_gl(), "closing the last bridge on the thread releases its context"
    assert got is not None and got.layout == "BGRA" and got.size == (48, 64)
    np.testing.assert_array_equal(as_rgba(got), image)
    assert got.frame_id == 1 and got.timecode is None and got.sender == "TD out"


def test_no_new_frame_reads_none(fake):
    fake.world.publish("TD", picture(4, 4))
    with SpoutSource("TD", spoutgl=fake, still_interval=None) as source:
        assert source.read(1.0) is not None
        assert source.read(0.05) is None
        fake.world.publish("TD", picture(4, 4, seed=2))
        assert source.read(1.0).frame_id == 2


def test_late_sender_is_waited_for_and_logged_once(fake, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    with SpoutSource("late", spoutgl=fake, retry_interval=0.01) as source:
        assert [source.read(0.03) for _ in range(5)] == [None] * 5
        fake.world.publish("late", picture(16, 16))
        frame = source.read(1.0)
    assert frame is not None and frame.size == (16, 16)
    assert sum("waiting for Spout sender 'late'" in r.message for r in caplog.records) == 1


def test_resize_reallocates_and_keeps_running(fake):
    fake.world.publish("TD", picture(32, 64))
    with SpoutSource("TD", spoutgl=fake) as source:
        assert source.read(1.0).size == (32, 64)
        bigger = picture(96, 128, seed=3)
        fake.world.publish("TD", bigger)
        frame = source.read(1.0)
        assert frame.size == (96, 128)
        np.testing.assert_array_equal(as_rgba(frame), bigger)
        fake.world.publish("TD", picture(10, 12, seed=4))
        assert source.read(1.0).size == (10, 12)


def test_sender_closes_and_returns(fake, caplog):
    caplog.set_level(logging.INFO, logger="dreamwire.bridges.spout")
    fake.world.publish("TD", picture(8, 8))
    with SpoutSource("TD", spoutgl=fake, retry_interval=0.01) as source:
        assert source.read(1.0) is not None
        fake.world.close("TD")
        assert [source.read(0.02) for _ in range(5)] == [None] * 5, "a closed sender must read as None"
        back = picture(20, 30, seed=5)
        fake.world.publish("TD", back)
        frame = source.read(1.0)
    assert frame is not None
    np.testing.assert_array_equal(as_rgba(frame), back)
    messages = [r.message for r in caplog.records]
    assert sum("lost Spout sender 'TD'" in m for m in messages) == 1
    assert not any("waiting for" in m for m in messages), "a lost sender is reported as lost, once"


def test_empty_name_follows_the_active_sender(fake):
    fake.world.publish("first", picture(4, 4))
    fake.world.publish("second", picture(6, 6))
    with SpoutSource("", spoutgl=fake) as source:
        frame = source.read(1.0)
    assert frame.size == (4, 4) and frame.sender == "first", "frames name the active sender they came from"


# --- sending -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["RGBA", "BGRA", "RGB", "BGR"])
def test_sink_sends_every_layout_without_conversion(fake, layout):
    rgba = picture(12, 20, seed=6)
    index = {"RGBA": [0, 1, 2, 3], "BGRA": [2, 1, 0, 3], "RGB": [0, 1, 2], "BGR": [2, 1, 0]}[layout]
    pixels = np.ascontiguousarray(rgba[..., index])
    with SpoutSink("dw", spoutgl=fake) as sink, SpoutSource("dw", spoutgl=fake) as source:
        sink.write(Frame(pixels=pixels, layout=layout, frame_id=1, capture_time=0.0))
        got = source.read(1.0)
    expected = rgba.copy()
    if len(layout) == 3:
        expected[..., 3] = 255
    np.testing.assert_array_equal(as_rgba(got), expected)


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
    with SpoutSink("t", spoutgl=fake) as sink, SpoutSource("t", spoutgl=fake) as source:
        sink.write(Frame(pixels=torch.full((4, 6, 3), 7, dtype=torch.uint8), layout="RGB", frame_id=1,
                         capture_time=0.0))
        got = source.read(1.0)
    assert got.size == (4, 6) and (as_rgba(got)[..., :3] == 7).all()


def test_bad_frames_and_names_are_clear_errors(fake):
    with pytest.raises(BridgeError, match="at most"):
        SpoutSink("x" * 300, spoutgl=fake)
    with pytest.raises(BridgeError, match="gl must be"):
        SpoutSource("x", spoutgl=fake, gl="egl")
    with pytest.raises(BridgeError, match="delivers"):
        SpoutSource("x", spoutgl=fake, layout="RGB")
    with SpoutSink("dw", spoutgl=fake) as sink:
        with pytest.raises(BridgeError, match="layout"):
            sink.write(Frame(pixels=np.zeros((2, 2, 4), np.uint8), layout="ARGB", frame_id=1, capture_time=0.0))
        with pytest.raises(BridgeError, match="shape"):
            sink.write(Frame(pixels=np.zeros((2, 2, 3), np.uint8), layout="RGBA", frame_id=1, capture_time=0.0))
    with pytest.raises(BridgeError, match="before open"):
        SpoutSource("x", spoutgl=fake).read(0.0)


# --- OpenGL contexts ----------------------------------------------------------------------------------------


def _in_thread(call):
    """Run ``call`` on a new thread; return its result or raise its exception here."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # handed back to the test thread
            out["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_gl_context_stays_on_its_thread(fake):
    fake.world.publish("TD", picture(4, 4))
    with SpoutSource("TD", spoutgl=fake) as source:
        assert source.read(1.0) is not None
        with pytest.raises(BridgeError, match="thread"):
            _in_thread(lambda: source.read(0.01))


def test_bridges_on_one_thread_share_its_context_and_the_last_one_releases_it(fake):
    frame = Frame(pixels=picture(4, 4), layout="RGBA", frame_id=1, capture_time=0.0)
    sink, source = SpoutSink("dw", spoutgl=fake), SpoutSource("dw", spoutgl=fake)
    sink.open()
    source.open()
    sink.write(frame)  # the sink makes this thread's context
    assert source.read(1.0) is not None
    sink.close()  # the source still reads on this thread
    fake.world.publish("dw", picture(4, 4, seed=1))
    assert fake.world.has_gl() and source.read(1.0) is not None
    source.close()
    assert not fake.world.has_gl()


def test_source_and_sink_on_two_threads_each_get_a_context_and_release_it_there(fake):
    fake.world.publish("TD", picture(4, 4))
    both_in, counted = threading.Barrier(3), threading.Barrier(3)
    frame = Frame(pixels=picture(4, 4), layout="RGBA", frame_id=1, capture_time=0.0)
    source, sink = SpoutSource("TD", spoutgl=fake), SpoutSink("dw", spoutgl=fake)
    source.open()
    sink.open()

    def run(use, bridge) -> None:  # like the loop: one thread per bridge, each closes its own
        use()
        both_in.wait()
        counted.wait()
        bridge.close()

    workers = [threading.Thread(target=run, args=(lambda: source.read(1.0), source)),
               threading.Thread(target=run, args=(lambda: sink.write(frame), sink))]
    for worker in workers:
        worker.start()
    both_in.wait()
    contexts = len(fake.world.gl)
    counted.wait()
    for worker in workers:
        worker.join()
    assert contexts == 2 and fake.world.gl == {}


class FakeGlfw(types.ModuleType):
    """Records each glfw call with whether it ran on the main thread."""

    VISIBLE, FALSE = 0x20004, 0

    def __init__(self) -> None:
        super().__init__("glfw")
        self.calls: list[tuple[str, bool]] = []
        for name in ("init", "window_hint", "create_window", "make_context_current", "destroy_window", "terminate"):
            setattr(self, name, self._recorder(name))

    def _recorder(self, name: str):
        def call(*args):
            self.calls.append((name, threading.current_thread() is threading.main_thread()))
            return object() if name == "create_window" else True
        return call


def test_glfw_is_initialised_once_and_only_touched_on_the_main_thread(fake, monkeypatch):
    glfw = FakeGlfw()
    monkeypatch.setitem(sys.modules, "glfw", glfw)
    monkeypatch.setattr(_glcontext, "_glfw", None)
    fake.world.publish("TD", picture(4, 4))
    source, sink = SpoutSource("TD", spoutgl=fake, gl="glfw"), SpoutSink("dw", spoutgl=fake, gl="glfw")
    source.open()
    sink.open()
    frame = Frame(pixels=picture(4, 4), layout="RGBA", frame_id=1, capture_time=0.0)
    for bridge, use in ((source, lambda: source.read(1.0)), (sink, lambda: sink.write(frame))):
        _in_thread(lambda use=use, bridge=bridge: (use(), bridge.close()))  # the loop's threads use and close
    _glcontext.shutdown_glfw()  # what atexit runs, on the main thread
    names = [name for name, _ in glfw.calls]
    assert names.count("init") == 1 and names.count("terminate") == 1 and names.count("create_window") == 2
    off_main = {name for name, main in glfw.calls if not main}
    assert off_main == {"make_context_current"}, f"called off the main thread: {off_main}"


def test_glfw_opened_off_the_main_thread_is_a_clear_error(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "glfw", FakeGlfw())
    with pytest.raises(BridgeError, match="main thread"):
        _in_thread(lambda: SpoutSink("dw", spoutgl=fake, gl="glfw").open())


def test_glfw_context_needs_glfw(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "glfw", None)
    monkeypatch.setattr(_glcontext, "_glfw", None)
    with pytest.raises(BridgeError, match="glfw"):
        SpoutSink("dw", spoutgl=fake, gl="glfw").open()


# --- listing ----------------------------------------------------------------------------------------------


def test_list_senders_and_registry_injection(monkeypatch):
    listing = make_spoutgl()
    listing.world.publish("b", picture(2, 2))
    listing.world.publish("a", picture(2, 2))
    monkeypatch.setitem(sys.modules, "SpoutGL", listing)
    assert list_senders() == ["a", "b"]
    source = make_source("spout:a")  # the registry path finds the injected module too
    with source:
        assert source.read(1.0).size == (2, 2)
