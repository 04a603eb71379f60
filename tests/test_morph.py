"""Timed morphs: exact against a fake frame clock, replace from the current value, prompt weights sum to 1."""

from __future__ import annotations

import math

import pytest

from dreamwire.control.commands import MorphRequest
from dreamwire.control.curves import CURVES, amount
from dreamwire.control.params import Params
from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.rig import Rig
from dreamwire.osc.wire import build_message, parse_packet
from tests.fakes.clock import FakeClock


def _rig(**params):
    clock = FakeClock()
    state = ParamState(Params(params))
    return Rig(state, clock=clock), state, clock


@pytest.mark.parametrize("curve", list(CURVES))
def test_curves_start_at_0_end_at_1_and_stay_inside(curve):
    assert amount(curve, 0.0, 2.0) == 0.0 and amount(curve, 2.0, 2.0) == 1.0
    assert all(0.0 <= amount(curve, t / 10, 1.0) <= 1.0 for t in range(11))


@pytest.mark.parametrize("curve", list(CURVES))
def test_numeric_morph_is_exact_at_every_engine_step_of_the_frame_clock(curve):
    rig, state, clock = _rig(strength=0.2)
    rig.submit({}, [MorphRequest("strength", 0.8, 2.0, curve)])
    for k in range(1, 25):  # engine steps at an uneven 1/12 s, as the loop calls tick
        clock.t = 100.0 + k / 12
        rig.tick()
        u = min(1.0, (k / 12) / 2.0)
        assert state.params.strength == pytest.approx(0.2 + 0.6 * CURVES[curve](u), abs=1e-12)
    assert state.params.strength == 0.8
    assert rig.morphs() == []


def test_ease_is_the_cosine_curve():
    assert CURVES["ease"](0.5) == pytest.approx(0.5)
    assert CURVES["ease"](0.25) == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4))


def test_replacing_a_morph_continues_from_its_current_value():
    rig, state, clock = _rig(strength=0.0)
    rig.submit({}, [MorphRequest("strength", 1.0, 4.0)])
    clock.t = 101.0
    rig.tick()
    assert state.params.strength == pytest.approx(0.25)
    clock.t = 102.0  # no engine step yet at t=102: the new morph starts where the old one is *now* (0.5)
    rig.submit({}, [MorphRequest("strength", 0.0, 1.0)])
    assert state.params.strength == pytest.approx(0.5)
    clock.t = 102.5
    rig.tick()
    assert state.params.strength == pytest.approx(0.25)
    assert len(rig.morphs()) == 1
    clock.t = 103.0
    rig.tick()
    assert state.params.strength == 0.0


def test_prompt_morph_is_a_blend_whose_weights_sum_to_1_at_every_step():
    rig, state, clock = _rig(prompt="a city")
    rig.submit({}, [MorphRequest("prompt", "a forest", 1.0, "ease")])
    seen = []
    for k in range(1, 10):
        clock.t = 100.0 + k / 10
        rig.tick()
        blend = dict(state.params.prompt_blend)
        assert sum(blend.values()) == pytest.approx(1.0, abs=1e-12)
        assert blend.get("a forest", 0.0) == pytest.approx(CURVES["ease"](k / 10), abs=1e-9)
        seen.append(blend.get("a forest", 0.0))
    assert seen == sorted(seen)  # monotonic crossfade
    clock.t = 101.0
    rig.tick()
    assert state.params.prompt == "a forest" and state.params.prompt_blend == ()


def test_replacing_a_prompt_morph_crossfades_from_the_current_blend():
    rig, state, clock = _rig(prompt="a")
    rig.submit({}, [MorphRequest("prompt", "b", 2.0)])
    clock.t = 101.0
    rig.tick()
    rig.submit({}, [MorphRequest("prompt", "c", 1.0)])
    clock.t = 101.5
    rig.tick()
    blend = dict(state.params.prompt_blend)
    assert blend == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5})
    assert sum(blend.values()) == pytest.approx(1.0)


def test_seed_morph_sweeps_a_seed_blend():
    rig, state, clock = _rig(seed=7)
    rig.submit({}, [MorphRequest("seed", 9, 1.0)])
    clock.t = 100.25
    rig.tick()
    assert dict(state.params.seed_blend) == pytest.approx({7: 0.75, 9: 0.25})
    clock.t = 101.0
    rig.tick()
    assert state.params.seed == 9 and state.params.seed_blend == ()


def test_a_direct_change_cancels_the_morph_of_that_parameter():
    rig, state, clock = _rig(strength=0.0)
    rig.submit({}, [MorphRequest("strength", 1.0, 4.0)])
    rig.submit({"strength": 0.3})
    clock.t = 102.0
    rig.tick()
    assert state.params.strength == 0.3 and rig.morphs() == []


def test_morph_in_beats_follows_the_tempo():
    rig, state, clock = _rig(delta=0.0)
    rig.tempo.set_bpm(60.0)  # one beat a second
    rig.submit({}, [MorphRequest("delta", 1.0, 2.0, "linear", "beats")])
    clock.t = 101.0
    rig.tick()
    assert state.params.delta == pytest.approx(0.5)


# --- over OSC ------------------------------------------------------------------------------------------


def _handler():
    clock = FakeClock()
    state = ParamState()
    rig = Rig(state, clock=clock)
    return OscHandler(state, lambda: {}, rig=rig), clock


def test_osc_morph_and_status_shows_it_in_flight():
    h, clock = _handler()
    out = h.handle(build_message("/dreamwire/morph", ["guidance_scale", 3.0, 2.0, "ease"]))
    assert out.errors == [] and out.applied
    clock.t = 101.0
    h.rig.tick()
    status = {m.address: m.args for m in (parse_packet(d)[0] for d in h.state_messages())}
    assert len(status["/dreamwire/state/morphs"]) == 1 and "guidance_scale" in status["/dreamwire/state/morphs"][0]
    assert status["/dreamwire/state/tempo"] == [120.0]
    assert status["/dreamwire/state/guidance_scale"][0] == pytest.approx(1.2 + 1.8 * 0.5, rel=1e-6)


@pytest.mark.parametrize(("args", "fragment"), [
    (["nope", 1.0, 1.0], "unknown parameter"),
    (["pause", 1, 1.0], "cannot morph"),
    (["strength", "high", 1.0], "must be a number"),
    (["strength", 2.0, 1.0], "outside"),
    (["strength", 0.5, -1.0], "negative"),
    (["strength", 0.5, 1.0, "wobble"], "curve"),
    (["strength", 0.5, 1.0, "linear", "bars"], "unit"),
    (["strength", 0.5], "arguments"),
    (["prompt", 3.0, 1.0], "string"),
    (["strength", 0.5, "soon"], "time must be a number"),
])
def test_bad_morphs_are_rejected_and_change_nothing(args, fragment):
    h, _ = _handler()
    before = h.state.params
    out = h.handle(build_message("/dreamwire/morph", args))
    assert len(out.errors) == 1 and fragment in out.errors[0][1], out.errors
    assert out.errors[0][0] == "/dreamwire/morph"
    assert h.state.params == before and h.rig.morphs() == []


@pytest.mark.parametrize(("address", "args", "fragment"), [
    ("/dreamwire/tempo", [10.0], "outside 20 .. 300"),
    ("/dreamwire/tempo", [301.0], "outside"),
    ("/dreamwire/tempo", ["fast"], "number"),
    ("/dreamwire/beat", [1], "arguments"),
    ("/dreamwire/scene/save", [1000], "outside"),
    ("/dreamwire/scene/save", [-1], "outside"),
    ("/dreamwire/scene/recall", [5], "not saved"),
    ("/dreamwire/scene/recall", [1.5], "integer"),
    ("/dreamwire/quantize", ["sometimes"], "expected one of"),
])
def test_bad_vj_commands_get_errors(address, args, fragment):
    h, _ = _handler()
    out = h.handle(build_message(address, args))
    assert len(out.errors) == 1 and fragment in out.errors[0][1], out.errors


def test_a_bad_message_in_a_bundle_stops_the_morph_too():
    from dreamwire.osc.wire import build_bundle

    h, _ = _handler()
    out = h.handle(build_bundle([build_message("/dreamwire/morph", ["strength", 0.9, 1.0]),
                                 build_message("/dreamwire/tempo", [5.0])]))
    assert len(out.errors) == 1 and h.rig.morphs() == []


def test_a_direct_change_and_a_morph_in_one_bundle_morph_from_the_new_value():
    rig, state, clock = _rig(strength=0.0)
    rig.submit({}, [MorphRequest("strength", 1.0, 4.0)])
    clock.t = 102.0
    rig.submit({"strength": 0.2}, [MorphRequest("strength", 0.6, 1.0)])
    clock.t = 102.5
    rig.tick()
    assert state.params.strength == pytest.approx(0.4)


def test_a_morph_step_checks_only_the_morphing_values(monkeypatch):
    """Issue 17.2: an engine step of a morph neither rebuilds every value nor runs the engine's check."""
    from dreamwire.control.schema import SCHEMA

    calls = {"engine": 0}

    def engine_check(params):
        calls["engine"] += 1

    clock = FakeClock()
    state = ParamState(Params({"strength": 0.2}), check=engine_check)
    rig = Rig(state, clock=clock)
    rig.submit({}, [MorphRequest("strength", 0.8, 2.0)])
    seen: dict[str, int] = {}
    for s in SCHEMA:
        def counting(name, value, _inner=s.kind.check, _n=s.name):
            seen[_n] = seen.get(_n, 0) + 1
            return _inner(name, value)
        monkeypatch.setattr(s.kind, "check", counting)
    calls["engine"] = 0
    for k in range(1, 5):
        clock.t = 100.0 + 0.25 * k
        rig.tick()
    assert math.isclose(state.params.strength, 0.2 + 0.6 * 0.5)
    assert calls["engine"] == 0
    assert seen == {"strength": 4}


def test_status_reports_values_and_morph_progress_from_the_same_instant():
    """Issue 18.11: between engine steps the state is the last step's value; the morph line said the
    clock's progress (e.g. 21%) while strength was still the start value. Both are the last step's now."""
    h, clock = _handler()
    h.handle(build_message("/dreamwire/morph", ["strength", 0.8, 4.0]))  # 0.4 -> 0.8 over 4 s, linear
    clock.t = 101.0
    h.rig.tick()  # an engine step at 25%
    clock.t = 102.6  # a status request between steps, much later
    status = {m.address: m.args for m in (parse_packet(d)[0] for d in h.state_messages())}
    assert status["/dreamwire/state/strength"][0] == pytest.approx(0.5, rel=1e-6)
    assert " 25% 3.00s left" in status["/dreamwire/state/morphs"][0]
