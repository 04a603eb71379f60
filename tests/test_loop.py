"""The frame loop: slots, frame ids and latency, format/size handling, pause/bypass, slow sinks, errors."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from dreamwire.bench.overhead import measure_overhead
from dreamwire.bridges.base import Frame
from dreamwire.bridges.pattern import PatternSource
from dreamwire.control.params import Params
from dreamwire.live.loop import FrameLoop
from dreamwire.live.options import LoopOptions
from dreamwire.live.slots import LatestSlot
from dreamwire.live.state import ParamState
from tests.conftest import wait_until
from tests.fakes.bridges import FlakySource, ListSource, LiveSink, RecordingSink
from tests.fakes.engines import FakeEngine, InputRecordingEngine


def test_latest_slot_replaces_unread_and_reports_the_drop():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never read: a drop
    assert slot.get(0.01) == 2
    assert slot.get(0.01) is None
    assert slot.wait_empty(0.01)


def test_outputs_name_their_input_frame_and_keep_its_size_and_layout():
    # BGRA, odd size: converted to the engine's 64x64 and back to 37x53 BGRA.
    rng = np.random.default_rng(0)
    inputs = [Frame(rng.integers(0, 255, (37, 53, 4), dtype=np.uint8), "BGRA", i, time.perf_counter(),
                    timecode=1000 + i, frame_rate=(30, 1)) for i in range(6)]
    engine = FakeEngine(delay=1, cost=0.02)  # slower than the sink, so no output is dropped either
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource(inputs), sink, ParamState(), LoopOptions(max_frames=6),
                     on_sent=sink.observe).start()
    assert loop.wait(20)
    loop.stop()
    assert [f.frame_id for f in sink.frames] == list(range(6))
    # stream batch delay 1: output k comes from input k-1 (the first from input 0, primed)
    assert [f.source_id for f in sink.frames] == [0, 0, 1, 2, 3, 4]
    for sent, out in zip(sink.outputs, sink.frames):
        assert sent.frame is out and sent.delay == 1
        assert out.layout == "BGRA" and out.size == (37, 53)
        assert out.capture_time == inputs[out.source_id].capture_time
        assert out.timecode == 1000 + out.source_id  # the source's own clock passes through
        assert out.frame_rate == (30, 1)  # and so does what the source said about the frame
    assert loop.stats.frames_out == 6 and loop.stats.errors == 0
    assert sink.closed


def test_output_size_engine_leaves_engine_resolution():
    frame = Frame(np.zeros((40, 30, 3), np.uint8), "RGB", 0, time.perf_counter())
    sink = RecordingSink()
    loop = FrameLoop(FakeEngine(), ListSource([frame]), sink, ParamState(),
                     LoopOptions(max_frames=1, output_size="engine")).start()
    assert loop.wait(20)
    loop.stop()
    assert sink.frames[0].size == (64, 64)


def test_control_changes_apply_between_steps_and_pause_bypass_work():
    state = ParamState()
    engine = FakeEngine()
    sink = RecordingSink()
    loop = FrameLoop(engine, PatternSource("64x64@200"), sink, state, on_sent=sink.observe).start()
    try:
        wait_until(lambda: len(sink.frames) >= 3)
        state.apply({"strength": 0.7})
        wait_until(lambda: engine.params.strength == 0.7)
        state.apply({"pause": True})
        time.sleep(0.1)
        steps, n = engine.steps, len(sink.frames)
        time.sleep(0.3)
        assert engine.steps == steps  # paused: the engine does no work
        assert len(sink.frames) <= n + 1  # at most the frame already in flight
        state.apply({"pause": False, "bypass": True})
        wait_until(lambda: sink.outputs[-1].bypass)
        out = sink.outputs[-1].frame
        assert out.source_id is not None and isinstance(out.pixels, np.ndarray)  # the input, untouched
    finally:
        loop.stop()


def test_one_failing_step_is_counted_and_the_loop_keeps_going():
    engine = FakeEngine(fail_every=3)
    sink = RecordingSink()
    loop = FrameLoop(engine, PatternSource("64x64@0"), sink, ParamState(), LoopOptions(max_frames=10)).start()
    assert loop.wait(20)
    loop.stop()
    assert len(sink.frames) == 10
    failures = engine.steps // 3
    assert failures >= 1 and loop.stats.errors == failures  # each failed step counted once
    assert loop.stats.substituted >= failures  # and each one's frame went out as a stand-in




def test_source_failures_are_counted_not_fatal():
    sink = RecordingSink()
    loop = FrameLoop(FakeEngine(), FlakySource("64x64@0"), sink, ParamState(), LoopOptions(max_frames=8),
                     ).start()
    loop.options.read_timeout = 0.01
    assert loop.wait(20)
    loop.stop()
    assert len(sink.frames) == 8 and loop.stats.errors >= 1


def test_slow_sink_costs_drops_not_engine_steps():
    """Acceptance 5: a sink that sleeps 100 ms/frame next to a 5 ms engine: the engine keeps stepping."""
    engine = FakeEngine(cost=0.005)
    sink = RecordingSink(sleep=0.1)
    loop = FrameLoop(engine, PatternSource("64x64@0"), sink, ParamState()).start()
    try:
        wait_until(lambda: len(sink.frames) >= 8, timeout=30)
    finally:
        loop.stop()
    s = loop.stats
    written = len(sink.frames)
    # ~20x expected on an idle machine; >= 2x already shows the sink did not pace the engine
    assert s.steps >= 2 * written, (s.steps, written)
    # every step produced a frame: each one was either written, dropped at the output slot, or still pending
    assert s.steps - written - s.dropped_out in (0, 1)
    assert s.dropped_out > 0
    assert s.snapshot()["dropped"] >= s.dropped_out


def test_stop_flushes_and_closes_both_bridges():
    source = PatternSource("64x64@50")
    source.close = lambda: setattr(source, "closed", True)  # type: ignore[method-assign]
    sink = RecordingSink()
    loop = FrameLoop(FakeEngine(), source, sink, ParamState()).start()
    wait_until(lambda: len(sink.frames) >= 2)
    t0 = time.perf_counter()
    loop.stop()
    assert time.perf_counter() - t0 < 5
    assert sink.closed and source.closed
    assert loop.finished.is_set()


def test_real_engine_in_the_loop(make_engine):
    engine = make_engine(width=64, height=64)
    sink = RecordingSink()
    src = PatternSource("80x48@0")
    loop = FrameLoop(engine, src, sink, ParamState(), LoopOptions(max_frames=4)).start()
    assert loop.wait(60)
    loop.stop()
    out = sink.frames[-1]
    assert out.size == (48, 80) and out.layout == "RGB"
    assert isinstance(out.pixels, np.ndarray) and out.pixels.dtype == np.uint8  # host pixels, for any sink
    assert loop.stats.engine_s_total > 0


@pytest.mark.parametrize("frames", [6])
def test_measure_overhead_reports_the_figures(make_engine, frames):
    r = measure_overhead(engine=make_engine(width=64, height=64), frames=frames, warmup=2, width=64, height=64)
    assert set(r) >= {"wall_ms_per_frame", "engine_ms_per_step", "overhead", "fps"}
    assert r["engine_ms_per_step"] > 0 and r["wall_ms_per_frame"] > 0


def test_frame_buffer_of_two_sends_every_frame_in_order_with_its_source(make_engine):
    """f = 2 frames per engine call: both outputs go out, in order, each naming the input it came from."""
    from dreamwire.control.params import Params

    engine = make_engine(Params({"t_index_list": (32, 45)}), width=64, height=64, frames=2)
    frames = [Frame(np.full((48, 64, 3), 10 * i, np.uint8), "RGB", i, time.perf_counter()) for i in range(8)]
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource(frames), sink, ParamState(Params({"t_index_list": (32, 45)})),
                     LoopOptions(max_frames=8)).start()
    assert loop.wait(60)
    loop.stop()
    assert [f.frame_id for f in sink.frames] == list(range(8))
    # n = 2: call k returns the inputs of call k-1 (call 0 is primed from its own inputs).
    assert [f.source_id for f in sink.frames] == [0, 1, 0, 1, 2, 3, 4, 5]
    assert all(f.size == (48, 64) for f in sink.frames)




def test_live_sink_gets_the_last_output_repeated_while_the_source_is_silent():
    frames = [Frame(np.full((32, 32, 3), 50, np.uint8), "RGB", i, time.perf_counter()) for i in range(2)]
    sink = LiveSink()
    loop = FrameLoop(FakeEngine(delay=0), ListSource(frames), sink, ParamState(),
                     LoopOptions(hold_repeat=0.05), on_sent=sink.observe).start()
    wait_until(lambda: len(sink.frames) >= 6)  # 2 real outputs, then repeats of the last one
    loop.stop()
    assert len(sink.outputs) == len(sink.frames)
    real = [o.frame for o in sink.outputs if not o.held]
    held = [o.frame for o in sink.outputs if o.held]
    assert [f.source_id for f in real] == [0, 1]
    assert held and all(f.source_id == 1 for f in held)
    assert loop.stats.held == len(held) and loop.stats.frames_out == 2


def test_file_sinks_never_get_repeats():
    frames = [Frame(np.full((32, 32, 3), 50, np.uint8), "RGB", 0, time.perf_counter())]
    sink = RecordingSink()
    loop = FrameLoop(FakeEngine(delay=0), ListSource(frames), sink, ParamState(),
                     LoopOptions(hold_repeat=0.05)).start()
    wait_until(lambda: len(sink.frames) >= 1)
    time.sleep(0.3)
    loop.stop()
    assert len(sink.frames) == 1


def test_txt2img_ignores_input_pixels_and_follows_their_size(make_engine):
    from dreamwire.control.params import Params

    engine = make_engine(Params({"t_index_list": (0, 30)}), width=64, height=64, mode="txt2img", guidance="none")
    rng = np.random.default_rng(0)
    frames = [Frame(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), "RGB", i, time.perf_counter())
              for i in range(3)]
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource(frames), sink, ParamState(Params({"t_index_list": (0, 30)})),
                     LoopOptions(max_frames=3)).start()
    assert loop.wait(60)
    loop.stop()
    assert all(f.size == (40, 56) for f in sink.frames)
    # Seeded, fixed noise and no input image: every frame is the same picture, whatever came in.
    assert all(np.array_equal(f.pixels, sink.frames[0].pixels) for f in sink.frames)


class FakeCudaEvent:
    """A CUDA timing event stand-in: ``record`` stamps a shared clock; the 'GPU' has passed an event
    from the second time it is queried on, as when the CPU runs one step ahead."""

    clock = 0.0

    def __init__(self) -> None:
        self.t: float | None = None
        self.queries = 0

    def record(self) -> None:
        FakeCudaEvent.clock += 0.005
        self.t = FakeCudaEvent.clock

    def query(self) -> bool:
        self.queries += 1
        return self.queries > 1

    def elapsed_time(self, end: FakeCudaEvent) -> float:
        return 1000.0 * (end.t - self.t)


def test_step_timer_survives_a_step_that_raises():
    """Issue 9 fault 3: a failed step left a (start, None) entry behind and broke every later read."""
    from dreamwire.live.timing import StepTimer

    timer = StepTimer(torch.device("cpu"), event_factory=FakeCudaEvent)
    readings = []
    for k in range(8):
        try:
            with timer.step():
                if k == 3:
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")
        except RuntimeError:
            pass
        readings.append(timer.last)
    assert readings[-1] == pytest.approx(0.005)  # steps after the failure are still timed
    assert len(timer._pending) <= 1


def test_loop_times_every_step_after_a_failed_one_on_cuda_events():
    engine = FakeEngine(fail_at=(3,))
    sink = RecordingSink()
    from dreamwire.live.failsafe import Failsafe, FailsafeSettings
    from dreamwire.live.timing import StepTimer

    loop = FrameLoop(engine, PatternSource("64x64@0"), sink, ParamState(), LoopOptions(max_frames=8),
                     timer=StepTimer(torch.device("cpu"), event_factory=FakeCudaEvent),
                     failsafe=Failsafe(FailsafeSettings(retry_min=0.0))).start()
    assert loop.wait(20)
    loop.stop()
    assert len(sink.frames) == 8 and loop.stats.errors == 1 and loop.stats.steps >= 7
    assert loop._timer.last == pytest.approx(0.005)  # timing went on being read after the failure
    assert loop.stats.engine_s_total > 0




def test_a_blue_bgra_frame_reaches_the_engine_as_blue_rgb_and_returns_in_the_sinks_layout():
    blue = np.zeros((32, 32, 4), np.uint8)
    blue[..., 0], blue[..., 3] = 255, 255  # B G R A
    engine = InputRecordingEngine(delay=0)
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource([Frame(blue, "BGRA", 0, time.perf_counter())]), sink, ParamState(),
                     LoopOptions(max_frames=1)).start()
    assert loop.wait(20)
    loop.stop()
    r, g, b = engine.inputs[0][0]
    assert torch.allclose(r, torch.tensor(-1.0)) and torch.allclose(g, torch.tensor(-1.0))
    assert torch.allclose(b, torch.tensor(1.0))
    out = sink.frames[0]
    assert out.layout == "BGRA" and tuple(out.pixels[0, 0]) == (255, 0, 0, 255)


def test_input_resolution_changing_mid_run_restarts_the_engine_and_follows_the_size(make_engine):
    from dreamwire.control.params import Params

    engine = make_engine(Params({"t_index_list": (20, 32, 45)}), width=64, height=64)
    frames = [Frame(np.full((48, 64, 3), 40, np.uint8), "RGB", i, time.perf_counter()) for i in range(4)]
    frames += [Frame(np.full((80, 40, 3), 200, np.uint8), "RGB", i, time.perf_counter()) for i in range(4, 8)]
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource(frames), sink, ParamState(Params({"t_index_list": (20, 32, 45)})),
                     LoopOptions(max_frames=8), on_sent=sink.observe).start()
    assert loop.wait(60)
    loop.stop()
    assert [f.size for f in sink.frames] == [(48, 64)] * 4 + [(80, 40)] * 4
    # the first output at the new size is made from the first new-size frame, not an old one in flight
    assert [f.source_id for f in sink.frames][4:] == [4, 4, 4, 5]


def test_pause_with_a_live_sink_keeps_the_last_frame_going_and_the_engine_idle():
    engine = FakeEngine(delay=0)
    sink = LiveSink()
    state = ParamState()
    loop = FrameLoop(engine, PatternSource("32x32@100"), sink, state, LoopOptions(hold_repeat=0.05),
                     on_sent=sink.observe).start()
    try:
        wait_until(lambda: len(sink.frames) >= 3)
        state.apply({"pause": True})
        time.sleep(0.15)
        steps, held = engine.steps, len([o for o in sink.outputs if o.held])
        time.sleep(0.4)
        assert engine.steps == steps  # paused: no engine work
        assert len([o for o in sink.outputs if o.held]) >= held + 4  # but the sink still gets frames
        assert loop.stats.paused > 0
    finally:
        loop.stop()


def test_bypass_with_two_frames_per_call_passes_every_input_through(make_engine):
    from dreamwire.control.params import Params

    p = Params({"t_index_list": (32, 45), "bypass": True})
    engine = make_engine(p, width=64, height=64, frames=2)
    frames = [Frame(np.full((48, 64, 3), 10 * i, np.uint8), "RGB", i, time.perf_counter()) for i in range(5)]
    sink = RecordingSink()
    loop = FrameLoop(engine, ListSource(frames), sink, ParamState(p), LoopOptions(max_frames=5),
                     on_sent=sink.observe).start()
    assert loop.wait(60)
    loop.stop()
    assert [f.source_id for f in sink.frames] == [0, 1, 2, 3, 4]
    assert all(o.bypass for o in sink.outputs) and loop.stats.bypassed == 5
    assert all(np.array_equal(f.pixels, frames[f.source_id].pixels) for f in sink.frames)


def test_leaving_bypass_shows_current_input_and_timecodes_never_go_back(make_engine):
    from dreamwire.live.loop import FrameLoop
    from dreamwire.live.options import LoopOptions

    engine = make_engine(Params({"t_index_list": (20, 32, 45)}), width=64, height=64)
    state = ParamState(Params({"t_index_list": (20, 32, 45)}))
    k = [0]
    outputs = []

    class Source:
        on_demand = True

        def open(self):
            pass

        def read(self, timeout):
            k[0] += 1
            time.sleep(0.005)
            return Frame(np.full((64, 64, 3), k[0] % 255, np.uint8), "RGB", k[0], time.perf_counter(),
                         timecode=10_000 + k[0] if k[0] < 40 else k[0])  # the sender restarts its clock at 40

        def close(self):
            pass

    class Sink:
        def open(self):
            pass

        def write(self, frame):
            pass

        def close(self):
            pass

    loop = FrameLoop(engine, Source(), Sink(), state, LoopOptions(), on_sent=outputs.append).start()
    try:
        wait_until(lambda: len(outputs) > 8, 30)
        state.apply({"bypass": True})
        wait_until(lambda: any(o.bypass for o in outputs), 30)
        wait_until(lambda: k[0] > 50, 30)
        back = k[0]
        state.apply({"bypass": False})
        wait_until(lambda: sum(not o.bypass for o in outputs[-3:]) == 3 and outputs[-1].frame.source_id > back, 30)
    finally:
        loop.stop()
    after = [o for o in outputs[next(i for i, o in enumerate(outputs) if o.bypass):] if not o.bypass]
    assert after and after[0].frame.source_id >= back - 1  # never a frame from before the bypass
    codes = [o.frame.timecode for o in outputs if o.frame.timecode is not None]
    assert all(b >= a for a, b in itertools.pairwise(codes))
