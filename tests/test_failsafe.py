"""The failsafe (issue 10): failing and NaN steps never stop the output, health, backoff, fallback, stalls."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dreamwire.bridges.pattern import PatternSource
from dreamwire.control.params import Params
from dreamwire.live.failsafe import Failsafe, FailsafeSettings
from dreamwire.live.loop import FrameLoop
from dreamwire.live.options import LoopOptions
from dreamwire.live.state import ParamState
from tests.fakes.backends import FlakyBackend
from tests.fakes.bridges import Recorder


def _engine(make_engine, torch_backend, **flaky):
    engine = make_engine(Params({"t_index_list": (32, 45)}), width=64, height=64)
    engine.backend = FlakyBackend(torch_backend, **flaky)
    return engine


def _run(engine, rec: Recorder, frames: int, settings: FailsafeSettings | None = None, fallback=None, **opts):
    failsafe = Failsafe(settings or FailsafeSettings(retry_min=0.0), report=rec.report)
    loop = FrameLoop(engine, PatternSource("64x64@0"), rec, ParamState(Params({"t_index_list": (32, 45)})),
                     LoopOptions(max_frames=frames, **opts), failsafe=failsafe, fallback=fallback,
                     on_sent=rec.observe).start()
    assert loop.wait(60)
    loop.stop()
    return loop


def test_a_backend_that_raises_every_kth_call_never_stops_the_output(make_engine, torch_backend):
    engine = _engine(make_engine, torch_backend, raise_every=5)
    rec = Recorder()
    loop = _run(engine, rec, 24)
    assert len(rec.frames) == 24  # the output went on
    raised = engine.backend.raised
    assert raised >= 2 and loop.stats.errors == raised and len(rec.reports) == raised
    assert all("CUDA out of memory" in r for r in rec.reports)
    subs = [o for o in rec.outputs if o.substitute]
    assert len(subs) == raised == loop.stats.substituted
    made = [o for o in rec.outputs if not o.substitute]
    assert made and all(o.frame.pixels.dtype == np.uint8 for o in made)


def test_a_nan_output_is_never_sent_and_is_reported(make_engine, torch_backend):
    engine = _engine(make_engine, torch_backend, nan_calls=(6,))
    rec = Recorder()
    loop = _run(engine, rec, 12, FailsafeSettings(retry_min=0.0, on_error="passthrough"))
    nan_reports = [r for r in rec.reports if "NaN" in r]
    # The NaN is seen by the send thread; steps already queued behind it may carry it too (<= steps - 1).
    assert 1 <= len(nan_reports) <= 2 and loop.stats.errors == len(nan_reports)
    # The NaN step's frame went out as the input itself; everything the engine made and sent was finite.
    subs = [o for o in rec.outputs if o.substitute]
    assert subs and all(o.substitute == "passthrough" for o in subs)
    for o in subs:
        assert o.frame.layout == "RGB" and o.frame.size == (64, 64)
    # The in-flight frames were reset after the NaN: later outputs are engine-made again, not NaN-poisoned.
    assert not rec.outputs[-1].substitute


def test_after_repeated_failures_the_loop_falls_back_to_the_next_backend(make_engine, torch_backend):
    engine = _engine(make_engine, torch_backend, always_fail=True, name="tensorrt")
    rec = Recorder()
    switched = []

    def fallback():
        engine.swap_backend(torch_backend)
        switched.append(torch_backend.name)
        return torch_backend.name

    loop = _run(engine, rec, 20, FailsafeSettings(retry_min=0.0, fallback_after=3), fallback=fallback)
    assert switched == ["torch"] and loop.failsafe.fallbacks == 1
    assert any(r == "falling back to backend torch" for r in rec.reports)
    assert engine.backend is torch_backend
    assert not rec.outputs[-1].substitute  # the torch backend produces real frames again


def test_a_fallback_with_nothing_below_is_asked_once_and_health_stays_failing(make_engine, torch_backend):
    engine = _engine(make_engine, torch_backend, always_fail=True, name="torch")
    rec = Recorder()
    asked = []

    def nothing_below():
        asked.append(1)
        return None

    loop = _run(engine, rec, 20, FailsafeSettings(retry_min=0.0, fallback_after=3), fallback=nothing_below)
    assert engine.backend.raised >= 10 and len(asked) == 1 and loop.failsafe.fallbacks == 0
    assert loop.failsafe.health == "failing" and loop.failsafe.consecutive == engine.backend.raised


def test_fallback_disabled_keeps_retrying_and_reports_failing_health():
    clock = [0.0]
    fs = Failsafe(FailsafeSettings(fallback=False, failing_after=3, retry_min=0.1, retry_max=0.4,
                                   recover_after=5.0), clock=lambda: clock[0])
    assert fs.health == "ok" and fs.may_step()
    fs.failed("boom")
    assert fs.health == "degraded" and not fs.may_step()
    clock[0] += 0.1
    assert fs.may_step()
    fs.failed("boom")  # backoff doubles
    clock[0] += 0.15
    assert not fs.may_step()
    clock[0] += 0.05
    fs.failed("boom")
    assert fs.health == "failing" and not fs.take_switch()  # the user did not allow a fallback
    clock[0] += 10
    fs.failed("boom")
    fs.failed("boom")
    clock[0] += 0.4  # the longest pause is retry_max
    assert fs.may_step()
    fs.succeeded()
    assert fs.health == "degraded"
    clock[0] += 5.0
    assert fs.health == "ok"


def _always_failing(fs: Failsafe, clock: list[float], seconds: float, fps: float = 30.0) -> tuple[int, set[str]]:
    """Drive ``fs`` the way the frame loop does (fallback request, then a step when allowed) with a
    step that always fails and no backend to fall back to; returns the failed steps and the health
    states seen after the first ``failing_after`` failures."""
    failed, seen = 0, set()
    end = clock[0] + seconds
    while clock[0] < end:
        if fs.take_switch():
            fs.switched(None)  # what FrameLoop does when its fallback finds nothing below
        if fs.may_step():
            fs.failed("boom")
            failed += 1
        if failed >= fs.settings.failing_after:
            seen.add(fs.health)
        clock[0] += 1.0 / fps
    return failed, seen


def test_backoff_keeps_growing_when_no_backend_is_left_to_fall_back_to():
    """Issue 18.28: with nothing to fall back to, the pause doubles to retry_max instead of restarting."""
    clock = [0.0]
    settings = FailsafeSettings(retry_min=0.05, retry_max=2.0, fallback_after=5, failing_after=3)
    reports: list[str] = []
    fs = Failsafe(settings, report=reports.append, clock=lambda: clock[0])
    failed, seen = _always_failing(fs, clock, 6.0)
    # Pauses before each retry: 0.05, 0.1, 0.2, ... capped at 2.0; count the steps they allow in 6 s.
    allowed, t, n = 0, 0.0, 0
    while t < 6.0:
        allowed += 1
        n += 1
        t += min(settings.retry_max, settings.retry_min * 2 ** (n - 1))
    assert abs(failed - allowed) <= 1, (failed, allowed)  # the 1/30 s frame grid rounds each pause up
    assert seen == {"failing"}  # not flipping back to degraded every fallback_after failures
    assert reports.count("no backend left to fall back to; retrying the current one") == 1
    assert fs.fallbacks == 0


def test_the_watchdog_reports_a_stall_once_per_step(make_engine, torch_backend):
    rec = Recorder()
    engine = make_engine(Params({"t_index_list": (45,)}), width=64, height=64)
    slow = threading.Event()
    real_step = engine.step

    def step(images, sources=None):
        if not slow.is_set():
            slow.set()
            time.sleep(0.8)
        return real_step(images, sources)

    engine.step = step
    failsafe = Failsafe(FailsafeSettings(stall_after=0.3), report=rec.report)
    loop = FrameLoop(engine, PatternSource("64x64@0"), rec, ParamState(Params({"t_index_list": (45,)})),
                     LoopOptions(max_frames=4, watchdog_period=0.05), failsafe=failsafe).start()
    assert loop.wait(60)
    loop.stop()
    stalls = [r for r in rec.reports if "stall" in r]
    assert len(stalls) == 1 and failsafe.stalls == 1


@pytest.mark.parametrize("how", ["hold", "passthrough"])
def test_on_error_chooses_the_stand_in(make_engine, torch_backend, how):
    engine = _engine(make_engine, torch_backend, raise_every=4)
    rec = Recorder()
    _run(engine, rec, 12, FailsafeSettings(retry_min=0.0, on_error=how))
    for i, o in enumerate(rec.outputs):
        if not o.substitute:
            continue
        assert o.substitute == how
        if how == "hold":
            good = [p for p in rec.outputs[:i] if not p.substitute]
            if good:  # the last engine-made frame, again
                assert np.array_equal(o.frame.pixels, good[-1].frame.pixels)
        else:  # the pattern input itself (RGB, its own size)
            assert o.frame.layout == "RGB" and o.frame.pixels.shape == (64, 64, 3)


def test_health_reaches_telemetry_and_status(make_engine, torch_backend):
    from dreamwire.osc.handler import OscHandler
    from dreamwire.osc.wire import parse_packet

    engine = _engine(make_engine, torch_backend, always_fail=True)
    rec = Recorder()
    loop = _run(engine, rec, 6, FailsafeSettings(retry_min=0.0, fallback=False, failing_after=2))
    snap = loop.stats.snapshot()
    assert snap["health"] == 2.0 and snap["health_state"] == "failing" and "out of memory" in snap["health_reason"]
    handler = OscHandler(ParamState(), loop.stats.snapshot)
    got = {m.address: m.args for d in handler.stats_messages() for m in parse_packet(d)}
    assert got["/dreamwire/health"][0] == "failing" and "out of memory" in got["/dreamwire/health"][1]
    assert got["/dreamwire/stats/health"] == [2.0]
    assert got["/dreamwire/stats/substituted"] == [6.0] and got["/dreamwire/stats/frames"] == [6.0]
