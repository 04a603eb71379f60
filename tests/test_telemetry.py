"""Telemetry values against a controlled clock, input accounting, and the periodic push of a real run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from dreamwire.bridges.pattern import PatternSource
from dreamwire.live.loop import FrameLoop
from dreamwire.live.options import LoopOptions
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import STAT_DOCS, STAT_NAMES, Stats
from dreamwire.osc.server import OscServer, OscSettings
from dreamwire.osc.wire import build_message, parse_packet
from tests.fakes.bridges import RecordingSink
from tests.fakes.engines import FakeEngine


def test_fps_is_the_inverse_of_the_send_interval_on_a_controlled_clock():
    now = [100.0]
    stats = Stats(clock=lambda: now[0])
    for _ in range(30):
        stats.sent(0.02)
        now[0] += 0.04  # 25 frames a second
    snap = stats.snapshot()
    assert snap["fps"] == pytest.approx(25.0) and snap["latency_ms"] == pytest.approx(20.0)
    now[0] += 2.5  # nothing sent for longer than 2 s: the rate is stale
    assert stats.snapshot()["fps"] == 0.0


def test_every_stat_is_documented_and_reported():

    assert set(STAT_NAMES) == set(STAT_DOCS)
    snap = Stats().snapshot()
    assert all(isinstance(snap[n], float) for n in set(STAT_NAMES) - {"osc_errors"})  # the OSC server adds that one
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None))
    osc.handle_packet(build_message("/dreamwire/nope", []), ("127.0.0.1", 1))
    got = {m.address: m.args for d in osc.handler.stats_messages() for m in parse_packet(d)}
    assert {f"/dreamwire/stats/{n}" for n in STAT_NAMES} <= set(got) and got["/dreamwire/stats/osc_errors"] == [1.0]


def test_input_drops_are_counted_and_every_input_frame_is_accounted_for():
    """A 200 fps source into a 10 ms engine: inputs get dropped, and the counts add up exactly."""
    engine = FakeEngine(cost=0.01)
    sink = RecordingSink()
    loop = FrameLoop(engine, PatternSource("64x64@200"), sink, ParamState(), LoopOptions(max_frames=40)).start()
    assert loop.wait(30)
    loop.stop()
    s = loop.stats
    assert s.dropped_in > 0
    in_slot = s.frames_in - s.dropped_in - s.steps  # at most the one frame still waiting when the loop stopped
    assert in_slot in (0, 1), (s.frames_in, s.dropped_in, s.steps)
    assert s.steps - s.frames_out - s.dropped_out in (0, 1)  # every output sent, dropped, or still pending
    assert s.snapshot()["dropped_in"] == float(s.dropped_in)


def test_status_line_names_the_cause_of_dropped_frames_not_just_a_count():
    """Input drops mean the source outpaces the engine; output drops mean the sink lags: the line says so."""
    stats = Stats()
    for _ in range(7):
        stats.drop("in")
    stats.drop("out")
    stats.drop("out")
    line = stats.status_line()
    assert "source faster than engine: 7 input frames not used" in line
    assert "sink slower than engine: 2 outputs replaced" in line
    assert "dropped" not in line  # the bare count read like an error
    quiet = Stats().status_line()
    assert "faster" not in quiet and "slower" not in quiet  # nothing to explain when nothing was dropped
    assert stats.snapshot()["dropped"] == 9.0  # the OSC stat keeps its name and meaning


def _free_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    return sock


@pytest.mark.slow
def test_dreamwire_run_pushes_telemetry_periodically_without_being_asked(tmp_path):
    listener = _free_udp()
    port = listener.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dreamwire", "run", "--source", "pattern:64x64@30", "--sink",
                             "null", "--width", "64", "--height", "64", "--osc-port", "0", "--telemetry",
                             f"127.0.0.1:{port}", "--osc-telemetry-period", "0.2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pushes: list[dict] = []
    try:
        deadline = time.perf_counter() + 120

        def frames_sent() -> float:
            return pushes[-1].get("/dreamwire/stats/frames", [0.0])[0] if pushes else 0.0

        while time.perf_counter() < deadline and (len(pushes) < 5 or frames_sent() < 3):
            try:
                data = listener.recv(65535)
            except TimeoutError:
                continue
            pushes.append({m.address: m.args for m in parse_packet(data)})
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()
    assert len(pushes) >= 5
    assert all(set(f"/dreamwire/stats/{n}" for n in STAT_NAMES) <= set(p) for p in pushes)
    assert pushes[-1]["/dreamwire/stats/ready"] == [1.0] and pushes[-1]["/dreamwire/health"][0] in ("ok", "degraded")
    frames = [p["/dreamwire/stats/frames"][0] for p in pushes]
    assert frames == sorted(frames) and frames[-1] >= 3


def test_delay_frames_reports_the_real_lag_in_input_frames():
    """Issue 10 defect 13: a 200 fps source into a 20 ms engine with a stream delay of 1 step: the output lags by
    more input frames than engine steps, and the stat says so (the old one said 1)."""
    engine = FakeEngine(cost=0.02, delay=1)
    sink = RecordingSink()
    loop = FrameLoop(engine, PatternSource("64x64@200"), sink, ParamState(), LoopOptions(max_frames=30)).start()
    assert loop.wait(30)
    loop.stop()
    snap = loop.stats.snapshot()
    assert snap["delay_steps"] == 1.0
    assert snap["delay_frames"] > 2.0  # one step of 20 ms at 200 fps is ~4 input frames, plus the queueing


def test_delay_frames_counts_input_frames_not_engine_steps():
    stats = Stats()
    for i in range(10):
        stats.received(i)
    stats.step(0.01, False, 1)
    stats.sent(0.05, source_id=6)  # made from frame 6 while frame 9 was already in
    s = stats.snapshot()
    assert s["delay_frames"] == 3.0 and s["delay_steps"] == 1.0 and s["latency_ms"] == pytest.approx(50.0)
