"""Defects found from outside (issue 10), each reproduced black-box as it was reported."""

from __future__ import annotations

import itertools
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dreamwire.bridges.base import Frame
from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.live.state import ControlState
from dreamwire.live.telemetry import Stats
from dreamwire.osc.server import OscControl, OscSettings
from dreamwire.osc.wire import build_message, parse_packet
from tests.conftest import wait_until

SENDER = ("127.0.0.1", 50000)


def _control(**kw) -> OscControl:
    return OscControl(ControlState(), Stats().snapshot, OscSettings(port=0, telemetry=None, **kw))


def _raw(address: str, tags: str, payload: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        b += b"\0"
        return b + b"\0" * (-len(b) % 4)
    return pad(address.encode()) + pad(tags.encode()) + payload


def _nested(inner: bytes, depth: int) -> bytes:
    for _ in range(depth):
        inner = b"#bundle\0" + b"\0" * 7 + b"\1" + struct.pack(">i", len(inner)) + inner
    return inner


def test_1_deeply_nested_bundles_are_answered_with_an_error():
    osc = _control()
    nan = build_message("/dreamwire/strength", [float("nan")])
    before = osc.state.snapshot()
    assert osc.handle_packet(_nested(nan, 600), SENDER) == []
    assert osc.errors == 1 and osc.state.snapshot() == before
    ok = _nested(build_message("/dreamwire/strength", [0.25]), 7)  # ordinary nesting still works
    osc.handle_packet(ok, SENDER)
    assert osc.state.params.strength == pytest.approx(0.25)


@pytest.mark.parametrize("packet", [
    _raw("/dreamwire/seed_blend", ",if", struct.pack(">if", 1, 1e-30)),
    _raw("/dreamwire/seed_blend", ",ifif", struct.pack(">ifif", 1, 3e38, 2, 3e38)),
    _raw("/dreamwire/seed_blend", ",id", struct.pack(">id", 3, 1e39)),
    _raw("/dreamwire/prompt_blend", ",sdsd", b"a\0\0\0" + struct.pack(">d", 1e308) + b"b\0\0\0"
         + struct.pack(">d", 1e308)),
])
def test_2_blend_weights_that_cannot_normalise_are_rejected(packet):
    osc = _control()
    assert osc.handle_packet(packet, SENDER) == []
    assert osc.errors == 1 and osc.state.params == Params()


def test_2_accepted_blends_always_give_finite_noise_and_embeddings(make_engine):
    lo, hi = 1e-6, 1e6
    for blend in (((1, lo), (2, 0.0)), ((1, hi), (2, hi)), tuple((i, hi) for i in range(16))):
        engine = make_engine(Params({"seed_blend": blend, "t_index_list": (45,)}), width=64, height=64)
        assert np.isfinite(engine.noise.numpy()).all()
    engine = make_engine(Params({"prompt_blend": (("a", lo), ("b", hi)), "t_index_list": (45,)}), width=64, height=64)
    assert np.isfinite(engine.embeddings.cond.hidden.numpy()).all()


def test_3_status_answers_after_any_accepted_state():
    osc = _control()
    extreme = {"prompt_blend": tuple((f"p{i}" + "x" * 2040, 1e6) for i in range(16)), "prompt": "y" * 2048,
               "negative_prompt": "z" * 2048, "seed_blend": tuple((2**31 - 1 - i, 1e-6) for i in range(16)),
               "guidance_scale": 20.0, "seed": 2**31 - 1}
    osc.state.apply(extreme)
    replies = osc.handle_packet(build_message("/dreamwire/status", []), SENDER)
    assert len(replies) == 1  # one datagram, whatever the state
    got = {m.address: m.args for m in parse_packet(replies[0])}
    assert got["/dreamwire/state/prompt"] == ["y" * 2048]
    assert len(got["/dreamwire/state/prompt_blend"]) == 32 and "/dreamwire/error" not in got


def test_4_a_non_utf8_config_is_one_line_and_exit_2(tmp_path):
    p = tmp_path / "show.toml"
    p.write_bytes(b'prompt = "caf\xe9"\n')
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--config", str(p)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not UTF-8" in lines[0] and str(p) in lines[0]


def test_5_t_index_lists_longer_than_the_engine_can_run_are_rejected_everywhere(tmp_path, make_engine):
    from dreamwire.app import cli
    from dreamwire.app.config import ConfigError, load_toml

    nine = list(range(0, 45, 5))
    osc = _control()
    osc.handle_packet(build_message("/dreamwire/t_index_list", nine), SENDER)
    assert osc.errors == 1 and osc.state.params.t_index_list == ()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[control]\nt_index_list = {nine}\n")
    with pytest.raises(ConfigError, match="at most 8"):
        load_toml(cfg)
    with pytest.raises(ConfigError, match="at most 8"):
        cli.config_from_args(cli.build_parser().parse_args(["run", "--t-index-list", ",".join(map(str, nine))]))
    engine = make_engine(Params({"t_index_list": tuple(nine[:8])}), width=64, height=64, guidance="onetime")
    for _ in range(3):
        assert torch.isfinite(engine.step(torch.zeros(1, 3, 64, 64)).images).all()


def test_5_the_step_grid_comes_from_the_model(tiny_parts, torch_backend, prompt_encoder):
    """A scheduler with original_inference_steps=25: strength 1 runs, and index 40 is refused up front."""
    import dataclasses

    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    spec = dataclasses.replace(tiny_parts.spec, original_steps=25)
    engine = StreamEngine(torch_backend, prompt_encoder, spec, EngineConfig(width=64, height=64),
                          Params({"strength": 1.0, "steps": 4}))
    engine.step(torch.zeros(1, 3, 64, 64))
    assert max(engine.consts.t_index) < 25
    state = ControlState(engine.params, check=engine.check)
    with pytest.raises(ControlError, match=r"0\.\.24 step grid"):
        state.apply({"t_index_list": (10, 40)})
    assert state.params.t_index_list == ()


def test_6_an_osc_colour_argument_is_not_an_integer():
    osc = _control()
    osc.handle_packet(_raw("/dreamwire/seed", ",r", struct.pack(">I", 1234)), SENDER)
    assert osc.errors == 1 and osc.state.params.seed == Params().seed


def test_7_strings_are_capped_and_a_split_reply_is_reported(monkeypatch, caplog):
    from dreamwire.osc import server as osc_server

    osc = _control()
    osc.handle_packet(build_message("/dreamwire/prompt", ["x" * 60000]), SENDER)
    assert osc.errors == 1 and osc.state.params.prompt == Params().prompt
    monkeypatch.setattr(osc_server, "MAX_STATUS_BUNDLE", 512)
    caplog.set_level("WARNING", logger="dreamwire.osc.server")
    replies = osc.handle_packet(build_message("/dreamwire/status", []), SENDER)
    assert len(replies) > 1  # sent message by message: every value still arrives
    names = {m.address for r in replies for m in parse_packet(r)}
    assert "/dreamwire/state/prompt" in names and "/dreamwire/stats/fps" in names
    assert any("does not fit one datagram" in r.message for r in caplog.records)


def test_8_blends_are_capped():
    osc = _control()
    osc.handle_packet(build_message("/dreamwire/prompt_blend", [x for i in range(17) for x in (f"p{i}", 1.0)]),
                      SENDER)
    osc.handle_packet(build_message("/dreamwire/seed_blend", [x for i in range(17) for x in (i, 1.0)]), SENDER)
    assert osc.errors == 2 and osc.state.params == Params()


def test_8_a_new_blend_is_encoded_off_the_engine_thread(make_engine, prompt_encoder):
    """Frames keep flowing while a slow blend encodes; the blend lands when it is ready."""
    import threading

    from dreamwire.engine.background import Background

    engine = make_engine(Params({"t_index_list": (45,)}), width=64, height=64)
    gate = threading.Event()
    real = prompt_encoder.encode_blend

    def slow_blend(pairs):
        gate.wait(10)
        return real(pairs)

    engine.prompts = type("P", (), {"encode": prompt_encoder.encode, "encode_blend": staticmethod(slow_blend)})()
    engine.background = Background()
    before = engine.embeddings.cond
    engine.update(engine.params.replace(prompt_blend=(("a", 1.0), ("b", 1.0))))
    img = torch.zeros(1, 3, 64, 64)
    t0 = time.monotonic()
    for _ in range(3):
        engine.step(img)  # not blocked by the encode
    assert time.monotonic() - t0 < 9 and engine.embeddings.cond is before
    gate.set()
    wait_until(lambda: not engine.background.pending or engine.background._future.done(), 10)
    engine.step(img)
    assert engine.embeddings.cond is not before
    engine.background.close()


def test_9_status_replies_are_rate_limited_per_sender():
    osc = _control(status_rate=5.0)
    status = build_message("/dreamwire/status", [])
    answered = sum(bool(osc.handle_packet(status, SENDER)) for _ in range(50))
    assert 5 <= answered <= 7 and osc.errors == 50 - answered
    assert osc.handle_packet(status, ("127.0.0.2", 1))  # another sender has its own budget


def test_10_tcp_idle_connections_are_closed_and_connections_capped():
    osc = _control(tcp_idle_timeout=1.0, tcp_max_connections=3).start()
    try:
        idle = socket.create_connection(("127.0.0.1", osc.tcp_port), timeout=5)
        idle.settimeout(5)
        t0 = time.monotonic()
        assert idle.recv(1) == b""  # the server closed it
        assert 0.8 <= time.monotonic() - t0 < 4
        clients = [socket.create_connection(("127.0.0.1", osc.tcp_port), timeout=5) for _ in range(4)]
        wait_until(lambda: osc._tcp.evicted == 1, 5)
        clients[0].settimeout(5)
        assert clients[0].recv(1) == b""  # the longest idle went, the newest works
        from pythonosc import slip

        clients[-1].sendall(slip.encode(build_message("/dreamwire/strength", [0.7])))
        wait_until(lambda: osc.state.params.strength == pytest.approx(0.7), 5)
        for c in [*clients, idle]:
            c.close()
    finally:
        osc.close()


def test_11_leaving_bypass_shows_current_input_and_timecodes_never_go_back(make_engine):
    from dreamwire.live.loop import FrameLoop
    from dreamwire.live.options import LoopOptions

    engine = make_engine(Params({"t_index_list": (20, 32, 45)}), width=64, height=64)
    state = ControlState(Params({"t_index_list": (20, 32, 45)}))
    k = [0]
    outputs = []

    class Source:
        on_demand = True

        def open(self):
            pass

        def read(self, timeout):
            k[0] += 1
            time.sleep(0.005)
            return Frame(np.full((64, 64, 3), k[0] % 255, np.uint8), "RGB", k[0], time.monotonic(),
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


def test_13_delay_frames_counts_input_frames_not_engine_steps():
    stats = Stats()
    for i in range(10):
        stats.received(i)
    stats.step(0.01, False, 1)
    stats.sent(0.05, source_id=6)  # made from frame 6 while frame 9 was already in
    s = stats.snapshot()
    assert s["delay_frames"] == 3.0 and s["delay_steps"] == 1.0 and s["latency_ms"] == pytest.approx(50.0)
