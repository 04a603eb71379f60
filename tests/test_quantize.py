"""Quantize: a change sent mid-beat lands on the next beat (or bar) of a fake clock, within one engine step."""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from dreamwire.bridges.base import Frame
from dreamwire.control.beats import BeatGrid, from_link, next_boundary, tap, with_tempo
from dreamwire.control.commands import MorphRequest
from dreamwire.control.params import Params
from dreamwire.engine.api import EngineConfig
from dreamwire.live.loop import FrameLoop
from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.rig import Rig
from dreamwire.osc.tempo import LinkSession, TempoClock
from dreamwire.osc.wire import build_message
from tests.fakes.clock import FakeClock


def test_next_boundary_beat_and_bar():
    g = BeatGrid(120.0, 0.0, 0.0)
    assert next_boundary(g, 0.3, "beat") == pytest.approx(0.5)
    assert next_boundary(g, 0.5, "beat") == pytest.approx(0.5)  # on the beat: this beat
    assert next_boundary(g, 0.3, "bar") == pytest.approx(2.0)
    assert next_boundary(g, 0.3, "off") == 0.3


def test_tempo_change_keeps_the_phase():
    g = with_tempo(BeatGrid(120.0, 0.0, 0.0), 60.0, 1.25)
    assert g.beat(1.25) == pytest.approx(2.5)  # 2.5 beats in at 120 bpm, still 2.5 at 60
    assert next_boundary(g, 1.25, "beat") == pytest.approx(1.75)


def test_taps_set_tempo_and_downbeat():
    g, taps = BeatGrid(120.0, 0.0, 0.0), ()
    for t in (10.0, 10.8, 11.6, 12.4):
        g, taps = tap(g, taps, t)
    assert g.bpm == pytest.approx(75.0)
    assert next_boundary(g, 12.5, "bar") == pytest.approx(13.2)  # first tap 10.0 is beat 1; bar = 3.2 s


def test_link_grid_from_beat_and_phase():
    g = from_link(120.0, beat=33.25, phase=1.25, now=50.0)
    assert next_boundary(g, 50.0, "beat") == pytest.approx(50.375)
    assert next_boundary(g, 50.0, "bar") == pytest.approx(51.375)


def _rig(mode="beat"):
    clock = FakeClock(0.0)
    state = ParamState(Params({"quantize": mode}))
    rig = Rig(state, clock=clock, tempo=TempoClock(clock, 120.0))
    return rig, state, clock


def test_change_mid_beat_lands_on_the_next_beat_within_one_step():
    rig, state, clock = _rig("beat")
    clock.t = 0.2  # mid-beat (beats at 0, 0.5, 1.0 ...)
    rig.submit({"strength": 0.9})
    assert state.params.strength == 0.4 and rig.held() == 1
    for t in (0.25, 0.3, 0.45, 0.49):  # engine steps before the beat: nothing yet
        clock.t = t
        rig.tick()
        assert state.params.strength == 0.4
    clock.t = 0.52  # the first engine step at or after the beat
    rig.tick()
    assert state.params.strength == 0.9 and rig.held() == 0


def test_bar_quantize_and_morph_start_on_the_boundary():
    rig, state, clock = _rig("bar")
    clock.t = 0.7
    rig.submit({}, [MorphRequest("delta", 0.0, 1.0)])
    clock.t = 1.9
    rig.tick()
    assert state.params.delta == 1.0
    clock.t = 2.5  # bar at 2.0: the morph started there, so at 2.5 it is half-way
    rig.tick()
    assert state.params.delta == pytest.approx(0.5)


def test_quantize_itself_applies_at_once_and_bad_held_changes_are_refused_when_sent():
    rig = _rig("off")[0]
    h = OscHandler(rig.state, lambda: {}, rig=rig)
    out = h.handle(build_message("/dreamwire/quantize", ["beat"]))
    assert out.errors == [] and h.state.params.quantize == "beat"
    out = h.handle(build_message("/dreamwire/strength", [5.0]))
    assert out.errors and h.rig.held() == 0


class _Engine:
    def __init__(self, clock, log):
        self.config = EngineConfig(width=64, height=64)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.clock, self.log = clock, log

    def update(self, params):
        pass

    def reset(self):
        pass

    def step(self, images, sources=None):
        raise RuntimeError("not stepped in this test")


def test_the_frame_loop_ticks_the_rig_once_per_engine_step_before_its_snapshot():
    rig, state, clock = _rig("beat")
    clock.t = 0.2
    rig.submit({"strength": 0.9})
    seen: list = []
    loop = FrameLoop(_Engine(clock, seen), source=None, sink=None, state=state, before_step=rig.tick)
    loop.engine.update = lambda p: seen.append((clock.t, p.strength))
    frame = Frame(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy(), "rgb", 0, 0.0)
    state.apply({"pause": True})  # paused: the loop takes each frame without stepping the engine
    for t in (0.3, 0.45, 0.51, 0.6):
        clock.t = t
        loop._engine_frame(frame)
    assert seen == [(0.3, 0.4), (0.51, 0.9)]  # the held change reached the engine on the first step past 0.5


class _FakeLink:
    def __init__(self):
        self.tempo, self.beat, self.phase, self.quantum, self.enabled, self.num_peers = 90.0, 8.5, 0.5, 1, False, 2


def test_link_session_drives_the_grid_and_takes_tempo():
    link = _FakeLink()
    clock = FakeClock(10.0)
    tempo = TempoClock(clock, link=LinkSession(link=link))
    assert link.enabled and link.quantum == 4
    assert tempo.grid().bpm == 90.0 and tempo.source == "link"
    tempo.set_bpm(128.0)
    assert link.tempo == 128.0
    with pytest.raises(ValueError):
        tempo.tap()


def test_real_aalink_when_installed():
    pytest.importorskip("aalink")
    session = LinkSession(120.0)
    try:
        g = session.grid(0.0)
        assert 20.0 <= g.bpm <= 300.0
    finally:
        session.close()


def test_threads_submit_while_the_engine_ticks():
    rig = _rig("off")[0]
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            rig.tick()

    t = threading.Thread(target=ticker)
    t.start()
    for i in range(200):
        rig.submit({}, [MorphRequest("strength", (i % 10) / 10, 1.0)])
    stop.set()
    t.join()
    assert len(rig.morphs()) == 1


def test_link_without_aalink_is_a_clear_error(monkeypatch):
    from dreamwire.osc.tempo import LinkUnavailable

    monkeypatch.setitem(sys.modules, "aalink", None)  # import aalink now raises ImportError
    with pytest.raises(LinkUnavailable, match=r"pip install 'dreamwire\[link\]'"):
        LinkSession()


def test_quantize_off_flushes_held_changes_so_a_newer_change_wins():
    """Issue 18.30: tempo 60, beat, quantize bar, strength 0.9 (held), quantize off, strength 0.1: 0.1 from
    then on, never 0.9 after the bar."""
    clock = FakeClock(10.0)
    state = ParamState()
    rig = Rig(state, clock=clock, tempo=TempoClock(clock, 120.0))
    h = OscHandler(state, lambda: {}, rig=rig)
    for address, args in [("/dreamwire/tempo", [60.0]), ("/dreamwire/beat", []), ("/dreamwire/quantize", ["bar"]),
                          ("/dreamwire/strength", [0.9])]:
        assert not h.handle(build_message(address, args)).errors
        clock.t += 0.1
    assert state.params.strength == pytest.approx(0.4) and rig.held() == 1
    h.handle(build_message("/dreamwire/quantize", ["off"]))
    assert rig.held() == 0 and state.params.strength == pytest.approx(0.9)  # flushed, not dropped
    h.handle(build_message("/dreamwire/strength", [0.1]))
    for _ in range(20):  # well past the bar (4 s at 60 bpm)
        clock.t += 0.5
        rig.tick()
    assert state.params.strength == pytest.approx(0.1)
