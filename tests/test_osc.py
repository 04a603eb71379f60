"""OSC control: decoding, validation, status replies, errors to telemetry, bundles, fuzzing, TCP, docs."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

from dreamwire.app.docs import osc_markdown
from dreamwire.bridges.pattern import PatternSource
from dreamwire.control.params import Params
from dreamwire.control.schema import SCHEMA, SPECS
from dreamwire.live.loop import FrameLoop
from dreamwire.live.state import ParamState
from dreamwire.live.telemetry import STAT_NAMES, Stats
from dreamwire.osc.server import OscServer, OscSettings
from dreamwire.osc.wire import build_message, parse_packet
from tests.conftest import wait_until

SENDER = ("127.0.0.1", 50000)


class Listener:
    """A UDP socket on loopback that collects every OSC message it receives (the telemetry target)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[str, list]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend((m.address, m.args) for m in parse_packet(data))

    def errors(self) -> list[tuple[str, list]]:
        return [m for m in list(self.messages) if m[0] == "/dreamwire/error"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def _control(telemetry=None, **kw) -> OscServer:
    return OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=telemetry, **kw))


def _bundle(*messages: tuple[str, list], timetag: float = IMMEDIATELY) -> bytes:
    b = OscBundleBuilder(timetag)
    for address, args in messages:
        b.add_content(OscMessage(build_message(address, args)))
    return b.build().dgram


# --- decoding and validation (no sockets) ------------------------------------------------------------

GOOD = [
    ("prompt", ["a red fox"], "a red fox"),
    ("prompt_blend", ["city", 0.7, "forest", 0.3], (("city", 0.7), ("forest", 0.3))),
    ("prompt_blend", [], ()),
    ("negative_prompt", ["blur"], "blur"),
    ("guidance_scale", [2.5], 2.5),
    ("delta", [0.5], 0.5),
    ("seed", [42.0], 42),  # integers accept floats (TouchDesigner sends floats)
    ("seed_blend", [1, 0.5, 2.0, 0.5], ((1, 0.5), (2, 0.5))),
    ("strength", [0.75], 0.75),
    ("steps", [3.0], 3),
    ("t_index_list", [10, 20, 30], (10, 20, 30)),
    ("similarity_filter", [True], True),
    ("similarity_filter", [1.0], True),
    ("similarity_threshold", [0.9], 0.9),
    ("similarity_max_skip", [5], 5),
    ("latent_feedback", [0.15], 0.15),
    ("pause", [1], True),
    ("bypass", [0], False),
    ("quantize", ["bar"], "bar"),
    ("controlnet_scale", [0.5, 1.25], (0.5, 1.25)),
    ("controlnet_scale", [], ()),
    ("controlnet_enabled", [1, False], (True, False)),
    ("controlnet_start", [0.25], (0.25,)),
    ("controlnet_end", [0.75, 1.0], (0.75, 1.0)),
]


@pytest.mark.parametrize(("name", "args", "expected"), GOOD, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD)])
def test_every_parameter_is_settable_over_osc(name, args, expected):
    osc = _control()
    start = {"prompt_blend": [("x", 1.0)]} if name == "prompt_blend" else {}
    osc.state.apply(start)
    osc.handle_packet(build_message(f"/dreamwire/{name}", args), SENDER)
    assert osc.errors == 0
    value = getattr(osc.state.params, name)
    if isinstance(expected, tuple) and expected and isinstance(expected[0], tuple):  # OSC floats are float32
        assert [k for k, _ in value] == [k for k, _ in expected]
        assert [w for _, w in value] == pytest.approx([w for _, w in expected])
    elif isinstance(expected, float):
        assert value == pytest.approx(expected)
    else:
        assert value == expected


def test_every_schema_parameter_is_covered_by_the_examples():
    assert {g[0] for g in GOOD} == set(SPECS)


def _raw(address: str, tags: str, payload: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        b += b"\0"
        return b + b"\0" * (-len(b) % 4)
    return pad(address.encode()) + pad(tags.encode()) + payload


BAD = {
    "unknown address": build_message("/dreamwire/nope", [1.0]),
    "outside prefix": build_message("/other/strength", [0.5]),
    "wrong type": build_message("/dreamwire/strength", ["high"]),
    "string for prompt": build_message("/dreamwire/prompt", [3.0]),
    "too many args": build_message("/dreamwire/strength", [0.1, 0.2]),
    "no args": build_message("/dreamwire/seed", []),
    "out of range": build_message("/dreamwire/strength", [1.5]),
    "non-integral int": build_message("/dreamwire/steps", [2.5]),
    "nan": build_message("/dreamwire/delta", [float("nan")]),
    "odd pair count": build_message("/dreamwire/prompt_blend", ["a", 1.0, "b"]),
    "seed pair not int": build_message("/dreamwire/seed_blend", ["a", 1.0]),
    "descending t_index": build_message("/dreamwire/t_index_list", [30, 10]),
    "bool not 0/1": build_message("/dreamwire/pause", [0.5]),
    "status with args": build_message("/dreamwire/status", [1]),
    "truncated float": b"/dreamwire/strength\0,f\0\0",
    "short float": _raw("/dreamwire/strength", ",f", b"\0\0"),
    "trailing bytes": _raw("/dreamwire/strength", ",f", struct.pack(">f", 0.5) + b"\0\0\0\0"),
    "unsupported tag": _raw("/dreamwire/strength", ",Q", b""),
    "no comma": _raw("/dreamwire/strength", "f", struct.pack(">f", 0.5)),
    "empty": b"",
    "random bytes": bytes(range(7, 47)),
    "bare bundle": b"#bundle\0",
    "bundle element too long": b"#bundle\0" + b"\0" * 7 + b"\1" + struct.pack(">i", 64) + b"/x\0\0",
    "future bundle": _bundle(("/dreamwire/strength", [0.9]), timetag=time.time() + 365 * 86400),
    "wildcard bomb": build_message("/" + "*" * 40, [1.0]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_changes_nothing_and_is_reported(case, listener):
    osc = _control(telemetry=listener.address)
    before = osc.state.snapshot()
    assert osc.handle_packet(BAD[case], SENDER) == []
    assert osc.state.snapshot() == before
    assert osc.errors == 1
    wait_until(lambda: len(listener.errors()) == 1, 5)
    _address, (where, reason) = listener.errors()[0]
    assert isinstance(where, str) and isinstance(reason, str) and reason


def test_a_bundle_with_one_bad_message_applies_nothing():
    osc = _control()
    osc.handle_packet(_bundle(("/dreamwire/prompt", ["new"]), ("/dreamwire/strength", [9.0])), SENDER)
    assert osc.state.params == Params() and osc.errors == 1
    osc.handle_packet(_bundle(("/dreamwire/prompt", ["new"]), ("/dreamwire/seed", [7])), SENDER)
    v, p = osc.state.snapshot()
    assert (p.prompt, p.seed, v) == ("new", 7, 1)  # one apply, one version step


def test_status_answers_the_senders_own_port_with_state_and_stats():
    osc = _control().start()
    client = SimpleUDPClient("127.0.0.1", osc.port)
    client._sock.settimeout(5)
    try:
        client.send_message("/dreamwire/prompt", "status check")
        client.send_message("/dreamwire/status", [])
        data, _ = client._sock.recvfrom(65535)
    finally:
        osc.close()
    got = {m.address: m.args for m in parse_packet(data)}
    assert got["/dreamwire/state/prompt"] == ["status check"]
    assert {f"/dreamwire/state/{s.name}" for s in SCHEMA} <= set(got)
    assert {f"/dreamwire/stats/{n}" for n in ("fps", "engine_ms", "latency_ms", "dropped", "skip_rate")} <= set(got)
    assert got["/dreamwire/state/prompt_blend"] == []


def test_long_prompt_list_fits_in_one_datagram():
    """python-osc reads 8 KiB by default; the largest blend the schema accepts (~32 KB) must arrive whole."""
    osc = _control().start()
    blend = [x for i in range(16) for x in (f"prompt number {i:02d} " + "x" * 2030, 1.0)]
    dgram = build_message("/dreamwire/prompt_blend", blend)
    assert len(dgram) > 30000
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(dgram, ("127.0.0.1", osc.port))
        wait_until(lambda: len(osc.state.params.prompt_blend) == 16, 5)
    finally:
        osc.close()
    assert osc.errors == 0


def test_allow_list_ignores_other_senders():
    osc = _control(allow=("10.9.9.9",)).start()
    try:
        SimpleUDPClient("127.0.0.1", osc.port).send_message("/dreamwire/strength", 0.9)
        wait_until(lambda: osc.rejected_senders == 1, 5)
    finally:
        osc.close()
    assert osc.state.params.strength == SPECS["strength"].default


def test_tcp_control_status_and_fast_close_with_a_client_connected():
    osc = _control().start()
    assert osc.tcp_port == osc.port
    client = SimpleTCPClient("127.0.0.1", osc.tcp_port)
    client.send_message("/dreamwire/strength", 0.8)
    client.send_message("/dreamwire/strength", "bad")  # must not close the connection
    client.send_message("/dreamwire/status", [])
    got = {}
    for m in client.get_messages(5):
        got[m.address] = m.params
        if m.address == f"/dreamwire/stats/{STAT_NAMES[-1]}":  # the last message of a status reply
            break
    assert got.get("/dreamwire/state/strength") == [pytest.approx(0.8)], got
    t0 = time.perf_counter()
    osc.close()  # the client is still connected
    assert time.perf_counter() - t0 < 5
    client.close()
    assert osc.errors == 1


def test_telemetry_sends_stats_to_the_target(listener):
    osc = _control(telemetry=listener.address)
    osc.send_telemetry()
    wait_until(lambda: any(m[0] == "/dreamwire/stats/fps" for m in listener.messages), 5)
    names = {m[0].rsplit("/", 1)[1] for m in listener.messages if m[0].startswith("/dreamwire/stats/")}
    assert set(STAT_NAMES) <= names


# --- with frames flowing ---------------------------------------------------------------------------------


class CountingSink:
    def __init__(self) -> None:
        self.frames = 0
        self.params: list[Params] = []

    def open(self) -> None:
        pass

    def write(self, frame) -> None:
        self.frames += 1

    def observe(self, out) -> None:  # the loop's on_sent: the parameters each sent frame was made with
        self.params.append(out.params)

    def close(self) -> None:
        pass


class RecordingEngine:
    """Wraps a real engine and records the parameters each step actually ran with."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seen: list[tuple[str, int]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def update(self, params):
        return self.inner.update(params)

    def step(self, images, sources=None):
        self.seen.append((self.inner.params.prompt, self.inner.params.seed))
        return self.inner.step(images, sources)


class SteppingState(ParamState):
    """Runs one engine update right after every apply: the unluckiest schedule there is, every time.

    If a bundle were applied message by message, the step between its messages would see half of it.
    """

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine
        self.seen: list[tuple[str, int]] = []

    def apply(self, changes, **how):
        new = super().apply(changes, **how)
        self.engine.update(self.params)
        self.seen.append((self.engine.params.prompt, self.engine.params.seed))
        return new


def test_bundle_lands_on_one_engine_step(make_engine):
    """Acceptance 3: prompt + seed in one bundle never show up half-applied on any step (deterministic)."""
    state = SteppingState(make_engine(width=64, height=64))
    osc = OscServer(state, Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False))
    pairs = [("alpha", 11), ("beta", 22), ("gamma", 33)]
    for prompt, seed in pairs * 2:
        osc.handle_packet(_bundle(("/dreamwire/prompt", [prompt]), ("/dreamwire/seed", [seed])), SENDER)
    assert state.seen == pairs * 2 and osc.errors == 0
    # The control: the same changes as two separate messages do land on different steps.
    state.seen.clear()
    osc.handle_packet(build_message("/dreamwire/prompt", ["delta"]), SENDER)
    osc.handle_packet(build_message("/dreamwire/seed", [44]), SENDER)
    assert state.seen == [("delta", 33), ("delta", 44)]


def test_bundles_sent_over_udp_to_a_running_loop_are_never_torn(make_engine):
    """The same through real sockets and the frame loop (timing-dependent, so it can only fail, never flake)."""
    engine = RecordingEngine(make_engine(width=64, height=64))
    state = ParamState()
    stats = Stats()
    sink = CountingSink()
    osc = OscServer(state, stats.snapshot, OscSettings(port=0, telemetry=None, tcp=False)).start()
    loop = FrameLoop(engine, PatternSource("64x64@0"), sink, state, stats=stats, on_sent=sink.observe).start()
    pairs = [("alpha", 11), ("beta", 22)]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(20):
                prompt, seed = pairs[i % 2]
                s.sendto(_bundle(("/dreamwire/prompt", [prompt]), ("/dreamwire/seed", [seed])), ("127.0.0.1", osc.port))
                time.sleep(0.01)
        wait_until(lambda: state.params.prompt == "beta" and engine.seen and engine.seen[-1] == ("beta", 22), 20)
    finally:
        loop.stop()
        osc.close()
    allowed = {(Params().prompt, Params().seed), *pairs}
    assert set(engine.seen) <= allowed, set(engine.seen) - allowed
    assert all((p.prompt, p.seed) in allowed for p in sink.params)
    assert osc.errors == 0


def _fuzz_datagrams(rng: random.Random, n: int) -> list[bytes]:
    """``n`` datagrams that must each produce exactly one error."""
    valid = [build_message("/dreamwire/strength", [0.5]), build_message("/dreamwire/prompt", ["a fox in snow"]),
             build_message("/dreamwire/prompt_blend", ["a", 1.0, "b", 2.0]),
             build_message("/dreamwire/seed", [7])]
    mistyped = list(BAD.values())
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 120))))
        elif kind < 0.55:
            m = rng.choice(valid)
            out.append(m[:rng.randint(0, len(m) - 1)])  # truncated anywhere
        elif kind < 0.65:
            m = bytearray(rng.choice(valid))
            m[rng.randrange(len(m))] = rng.choice(b"\0\xff/#,[]*")  # one corrupted byte
            out.append(bytes(m))
        elif kind < 0.9:
            out.append(rng.choice(mistyped))
        else:
            out.append(_bundle(("/dreamwire/seed", [3]), ("/dreamwire/strength", [rng.choice([-1.0, 2.0, 9.0])])))
    return out


def _errors_expected(dgram: bytes) -> bool:
    """A corrupted byte can leave a valid message; those are sent but not counted as bad."""
    osc = _control()
    osc.handle_packet(dgram, SENDER)
    return osc.errors == 1


def test_fuzz_keeps_running_and_reports_every_bad_message(make_engine, listener):
    """Acceptance 4: 2,000+ bad datagrams while frames flow: still up, frames keep coming, every one reported."""
    rng = random.Random(1234)
    datagrams = _fuzz_datagrams(rng, 2400)
    bad = [d for d in datagrams if _errors_expected(d)]
    assert len(bad) >= 2000
    state = ParamState()
    stats = Stats()
    sink = CountingSink()
    osc = OscServer(state, stats.snapshot, OscSettings(port=0, telemetry=listener.address, tcp=False)).start()
    loop = FrameLoop(make_engine(width=64, height=64), PatternSource("64x64@60"), sink, state, stats=stats).start()
    frames_seen = []
    try:
        wait_until(lambda: sink.frames > 0, 30)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(0, len(bad), 100):
                for d in bad[i:i + 100]:
                    s.sendto(d, ("127.0.0.1", osc.port))
                wait_until(lambda i=i: osc.errors >= min(i + 100, len(bad)), 20)
                frames_seen.append(sink.frames)
            s.sendto(build_message("/dreamwire/strength", [0.61]), ("127.0.0.1", osc.port))
        wait_until(lambda: state.params.strength == pytest.approx(0.61), 10)
        wait_until(lambda: len(listener.errors()) >= len(bad), 20)
        n = sink.frames
        wait_until(lambda: sink.frames > n + 3, 30)  # still producing after the storm
    finally:
        loop.stop()
        osc.close()
    assert osc.errors == len(bad)
    assert len(listener.errors()) == len(bad)
    assert frames_seen[-1] > frames_seen[0]  # frames kept flowing during the fuzzing
    assert stats.errors == 0


# --- docs ----------------------------------------------------------------------------------------------


def test_osc_docs_are_generated_from_the_schema():
    """Acceptance 8: docs/osc.md lists every address with type, range and default (python -m dreamwire.app.docs)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "osc.md").read_text(encoding="utf-8")
    assert text == osc_markdown(), "docs/osc.md is stale: run `python -m dreamwire.app.docs docs`"
    for spec in SCHEMA:
        row = next(line for line in text.splitlines() if line.startswith(f"| `/dreamwire/{spec.name}` |"))
        assert spec.type_label in row and spec.range_label in row


def test_aliases_from_the_schema_reach_the_same_parameter():
    osc = _control()
    osc.handle_packet(build_message("/dreamwire/guidance", [3.5]), SENDER)
    assert osc.state.params.guidance_scale == 3.5
    osc.handle_packet(build_message("/dreamwire/t_index", [10, 20, 30]), SENDER)
    assert osc.state.params.t_index_list == (10, 20, 30)


class _Counting:
    """Wraps a check and counts its calls."""

    def __init__(self, inner=None) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args) if self.inner is not None else None


def test_one_strength_message_is_checked_once_on_the_way_in(monkeypatch):
    """Issue 17.2: the value passes its kind once (its route), the snapshot the engine's check once (the
    apply); no other parameter is re-checked."""
    kinds = {s.name: _Counting(s.kind.check) for s in SCHEMA}
    for s in SCHEMA:
        monkeypatch.setattr(s.kind, "check", kinds[s.name])
    engine_check = _Counting()
    state = ParamState(check=engine_check)
    engine_check.calls = 0
    osc = OscServer(state, Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False))
    osc.handle_packet(build_message("/dreamwire/strength", [0.5]), SENDER)
    assert state.params.strength == 0.5 and osc.errors == 0
    assert engine_check.calls == 1
    assert {n: c.calls for n, c in kinds.items() if c.calls} == {"strength": 1}


def test_every_address_comes_from_the_one_table():
    """Issue 17.2: the handler answers exactly the addresses of osc.commands.address_table."""
    from dreamwire.control.commands import COMMANDS
    from dreamwire.osc.commands import address_table
    from dreamwire.osc.handler import OscHandler

    handler = OscHandler(ParamState(), dict)
    table = address_table(handler.rig)
    expected = {n for s in SCHEMA for n in (s.name, *s.aliases)} | {"status"} | {c.address for c in COMMANDS}
    assert set(table) == expected
    mapped = {a for a in expected if handler.dispatcher.handlers_for_address(f"/dreamwire/{a}")}
    assert mapped == expected


@pytest.mark.parametrize("messages", [
    [("/dreamwire/controlnet_start", [0.6]), ("/dreamwire/controlnet_end", [0.4])],  # one bundle
    [("/dreamwire/controlnet_start", [0.5]), ("/dreamwire/controlnet_end", [0.5])],  # equal: never runs
    [("/dreamwire/controlnet_start", [1.0])],  # against the default end 1
    [("/dreamwire/controlnet_end", [0.0])],  # against the default start 0
])
def test_controlnet_start_not_below_end_is_refused_on_the_pair(messages):
    """Issue 18.22: start >= end would silently disable the ControlNet (diffusers refuses it): the bundle
    is refused whole and names both parameters."""
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False))
    before = osc.state.params
    osc.handle_packet(_bundle(*messages, ("/dreamwire/strength", [0.9])), SENDER)
    assert osc.state.params == before and osc.errors == 1


def test_controlnet_pair_is_checked_across_separate_messages():
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False))
    osc.handle_packet(build_message("/dreamwire/controlnet_end", [0.5]), SENDER)
    osc.handle_packet(build_message("/dreamwire/controlnet_start", [0.7]), SENDER)
    assert osc.state.params.controlnet_start == () and osc.state.params.controlnet_end == (0.5,)
    assert osc.errors == 1
    osc.handle_packet(_bundle(("/dreamwire/controlnet_start", [0.7]), ("/dreamwire/controlnet_end", [0.9])), SENDER)
    assert osc.state.params.controlnet_start == pytest.approx((0.7,)) and osc.errors == 1


def test_status_budget_is_per_sender_port_and_per_tcp_connection():
    """Issue 18.25: TouchDesigner and a flooding client on one PC (one address, two ports) have their own
    budgets; so do two TCP connections, and a TCP connection and a UDP sender with the same port."""
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False,
                                                                  status_rate=5.0))
    status = build_message("/dreamwire/status", [])
    flooder, quiet = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
    assert sum(bool(osc.handle_packet(status, flooder)) for _ in range(50)) <= 7
    assert osc.handle_packet(status, quiet)
    assert sum(bool(osc.handle_packet(status, flooder, False, "tcp")) for _ in range(50)) >= 5
    assert osc.handle_packet(status, ("127.0.0.1", 40002), False, "tcp")


def test_status_total_cap_shares_equally_so_a_crowd_cannot_starve_a_quiet_client():
    """Issue 18.25: 40 flooding senders (each at its own full budget) and one client asking twice a second:
    all together stay under the total cap, and the quiet client is answered every second."""
    from dreamwire.osc.ratelimit import RateLimit

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    limit = RateLimit(10.0, 10.0, clock, total=100.0)
    answered = {"quiet": 0, "crowd": 0}
    quiet_seconds = set()
    for tick in range(10 * 1000):  # 10 s in 1 ms steps; every flooder asks each ms
        clock.t = tick / 1000
        for k in range(40):
            answered["crowd"] += limit.allow(("udp", "127.0.0.1", 50000 + k))
        if tick % 500 == 0 and limit.allow(("udp", "127.0.0.1", 7000)):
            answered["quiet"] += 1
            quiet_seconds.add(tick // 1000)
    assert answered["crowd"] + answered["quiet"] <= 100 * 10 * 1.1 + 300  # near the total cap (+ first bursts)
    assert quiet_seconds == set(range(10))


class _FakeSocket:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level, option, value) -> None:
        self.options.append((level, option, value))


def test_windows_binds_exclusively_and_never_asks_for_reuse(monkeypatch):
    """Issue 18.19: on Windows SO_REUSEADDR lets a second instance bind the same port silently; both OSC
    sockets ask for SO_EXCLUSIVEADDRUSE there instead (faked: it exists on Windows only)."""
    from dreamwire.osc import binding

    monkeypatch.setattr(binding, "on_windows", lambda: True)
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)  # ~SO_REUSEADDR, as winsock2.h
    for stream in (True, False):
        fake = _FakeSocket()
        binding.prepare_bind(fake, stream)
        assert fake.options == [(socket.SOL_SOCKET, -5, 1)]
    monkeypatch.setattr(binding, "on_windows", lambda: False)
    fake = _FakeSocket()
    binding.prepare_bind(fake, True)
    assert fake.options == [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]
    fake = _FakeSocket()
    binding.prepare_bind(fake, False)
    assert fake.options == []


def test_both_osc_servers_bind_through_prepare_bind_only(monkeypatch):
    """No socketserver reuse flag behind prepare_bind's back (socketserver's allow_reuse_address is
    SO_REUSEADDR, the Windows hijack); a second instance on the same port fails loudly."""
    from dreamwire.osc import server as server_mod
    from dreamwire.osc import tcp as tcp_mod

    calls = []
    monkeypatch.setattr(server_mod, "prepare_bind", lambda sock, stream: calls.append(("udp", stream)))
    monkeypatch.setattr(tcp_mod, "prepare_bind", lambda sock, stream: calls.append(("tcp", stream)))
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None)).start()
    try:
        assert sorted(calls) == [("tcp", True), ("udp", False)]
        assert osc._tcp.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        assert osc._udp.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        monkeypatch.undo()
        with pytest.raises(OSError):
            OscServer(ParamState(), Stats().snapshot, OscSettings(port=osc.port, telemetry=None)).start()
    finally:
        osc.close()


def _held_by_another_thread(lock) -> bool:
    """Whether another thread (here: the caller) holds ``lock``, tried from a fresh thread."""
    got: list[bool] = []

    def probe() -> None:
        got.append(lock.acquire(blocking=False))
        if got[0]:
            lock.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return not got[0]


def test_a_large_packet_is_checked_and_rendered_without_the_locks_the_engine_step_needs(tmp_path, monkeypatch):
    """Issue 18.33: a flood of large valid packets stalled frames for 1.1 s. The engine step takes the rig's
    lock (tick) and the state's (snapshot): neither may be held while a packet's values are checked or a
    saved scene is rendered, only while the checked changes are swapped in."""
    from dreamwire.osc import scenes as scenes_mod
    from dreamwire.osc.rig import Rig
    from dreamwire.osc.scenes import SceneStore

    state = ParamState()
    rig = Rig(state, scenes=SceneStore(tmp_path / "scenes.toml"))
    osc = OscServer(state, Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False), rig)
    seen: list[tuple[str, bool, bool]] = []
    text = SPECS["prompt"].kind
    real_check, real_body = text.check, scenes_mod.scene_body

    def check(name, value):
        seen.append(("check " + name, _held_by_another_thread(state._lock), _held_by_another_thread(rig._lock)))
        return real_check(name, value)

    def body(values):
        seen.append(("render", _held_by_another_thread(state._lock), _held_by_another_thread(rig._lock)))
        return real_body(values)

    monkeypatch.setattr(text, "check", check)
    monkeypatch.setattr(scenes_mod, "scene_body", body)
    big = "a city at night, " * 120  # near the 2,048-character limit
    osc.handle_packet(_bundle(("/dreamwire/prompt", [big]), ("/dreamwire/negative_prompt", [big]),
                              ("/dreamwire/scene/save", [1]), ("/dreamwire/scene/save", [2])), SENDER)
    assert osc.errors == 0 and state.params.prompt == big and rig.scenes.numbers() == [1, 2]
    assert rig.scenes.flush(10)
    assert {what for what, *_ in seen} == {"check prompt", "render"}
    assert [s for s in seen if s[1] or s[2]] == []


def test_sender_queues_serve_a_quiet_sender_before_a_flooders_backlog():
    """Issue 18.25: on one receive thread a quiet client's request waited behind a flooder's whole backlog;
    queued per sender and served in turn, it is handled in the next round, and each sender's order holds."""
    from dreamwire.osc.server import SenderQueues

    q = SenderQueues(per_sender=100 * 19, total=1 << 20)  # room for 100 datagrams of 19 bytes
    flooder, quiet = ("127.0.0.1", 1), ("127.0.0.1", 2)
    assert all(q.push(flooder, b"%019d" % i) for i in range(100))
    assert not q.push(flooder, b"x" * 20) and q.dropped == 1  # its own queue is full: dropped, counted
    assert q.push(quiet, b"status")
    first = q.round()
    assert first == [(flooder, b"%019d" % 0), (quiet, b"status")]
    rest = []
    while q:
        rest += q.round()
    assert rest == [(flooder, b"%019d" % i) for i in range(1, 100)]


def test_pacer_keeps_packet_handling_within_its_share_of_the_time():
    """Issue 18.33: a flood of packets held the GIL so the engine thread waited up to 5 ms per torch call;
    the OSC threads together may be busy at most ``share`` of the time, sleeping (GIL released) past it."""
    from dreamwire.osc.pacing import Pacer

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()

    def sleep(seconds: float) -> None:
        clock.t += seconds

    pacer = Pacer(share=0.25, window=0.02, clock=clock, sleep=sleep)
    busy = 0.0
    for _ in range(400):  # packets of 2 ms each, back to back
        started = clock.t
        clock.t += 0.002
        busy += 0.002
        pacer.handled(started)
    assert busy / clock.t <= 0.25 + 1e-9 and pacer.slept >= 0.7 * clock.t


def test_every_packet_is_paced(monkeypatch):
    osc = OscServer(ParamState(), Stats().snapshot, OscSettings(port=0, telemetry=None, tcp=False))
    calls = []
    monkeypatch.setattr(osc.pacer, "handled", lambda started: calls.append(started))
    osc.handle_packet(build_message("/dreamwire/strength", [0.5]), SENDER)
    osc.handle_packet(b"garbage", SENDER)
    assert len(calls) == 2
