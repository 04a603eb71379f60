"""What the OSC surface refuses, caps and rate-limits: hostile or oversized packets lose nothing."""

from __future__ import annotations

import socket
import struct
import time

import pytest
import torch

from dreamwire.control.params import Params
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import Stats
from dreamwire.osc.server import OscServer, OscSettings
from dreamwire.osc.wire import build_message, parse_packet
from tests.conftest import wait_until

SENDER = ("127.0.0.1", 50000)


def _control(**kw) -> OscServer:
    return OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None, **kw))


def _raw(address: str, tags: str, payload: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        b += b"\0"
        return b + b"\0" * (-len(b) % 4)
    return pad(address.encode()) + pad(tags.encode()) + payload


def _nested(inner: bytes, depth: int) -> bytes:
    for _ in range(depth):
        inner = b"#bundle\0" + b"\0" * 7 + b"\1" + struct.pack(">i", len(inner)) + inner
    return inner


def test_deeply_nested_bundles_are_answered_with_an_error():
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
def test_blend_weights_that_cannot_normalise_are_rejected(packet):
    osc = _control()
    assert osc.handle_packet(packet, SENDER) == []
    assert osc.errors == 1 and osc.state.params == Params()


def test_status_answers_after_any_accepted_state():
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


def test_an_osc_colour_argument_is_not_an_integer():
    osc = _control()
    osc.handle_packet(_raw("/dreamwire/seed", ",r", struct.pack(">I", 1234)), SENDER)
    assert osc.errors == 1 and osc.state.params.seed == Params().seed


def test_strings_are_capped_and_a_split_reply_is_reported(monkeypatch, caplog):
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


def test_blends_are_capped():
    osc = _control()
    osc.handle_packet(build_message("/dreamwire/prompt_blend", [x for i in range(17) for x in (f"p{i}", 1.0)]),
                      SENDER)
    osc.handle_packet(build_message("/dreamwire/seed_blend", [x for i in range(17) for x in (i, 1.0)]), SENDER)
    assert osc.errors == 2 and osc.state.params == Params()


def test_status_replies_are_rate_limited_per_sender():
    osc = _control(status_rate=5.0)
    status = build_message("/dreamwire/status", [])
    answered = sum(bool(osc.handle_packet(status, SENDER)) for _ in range(50))
    assert 5 <= answered <= 7 and osc.errors == 50 - answered
    assert osc.handle_packet(status, ("127.0.0.2", 1))  # another sender has its own budget


def test_tcp_idle_connections_are_closed_and_connections_capped():
    osc = _control(tcp_idle_timeout=1.0, tcp_max_connections=3).start()
    try:
        idle = socket.create_connection(("127.0.0.1", osc.tcp_port), timeout=5)
        idle.settimeout(5)
        t0 = time.perf_counter()
        assert idle.recv(1) == b""  # the server closed it
        assert 0.8 <= time.perf_counter() - t0 < 4
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


def test_t_index_lists_longer_than_the_engine_can_run_are_rejected_everywhere(tmp_path, make_engine):
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
