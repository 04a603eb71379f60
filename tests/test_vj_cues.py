"""examples/vj_cues.py against a real `dreamwire run --model tiny`, and examples/osc_monitor.py on telemetry."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamwire.live.state import ControlState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.wire import build_bundle, build_message
from tests.test_e2e_run import Client, _free_port, _log, _start, _stop

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import vj_cues  # noqa: E402

CUES = """
bpm = 240                 # 4 beats a second
[[cue]]
beat = 0
prompt = "cue one"
strength = 0.3
save = 1
[[cue]]
beat = 6
prompt = "cue two"
seed = 5
[[cue]]
beat = 12
morph = { name = "strength", target = 0.9, time = 6, curve = "ease", unit = "beats" }
[[cue]]
beat = 24
scene = 1
"""


def test_example_cue_file_is_accepted_message_for_message():
    _, cues = vj_cues.read_cues(EXAMPLES / "cues.toml")
    h = OscHandler(ControlState(), lambda: {})
    assert len(cues) >= 4
    for cue in cues:
        out = h.handle(vj_cues.bundle("/dreamwire", cue.messages).dgram)
        assert out.errors == [], (cue.index, out.errors)
    kinds = {a for c in cues for a, _ in c.messages}
    assert {"prompt", "strength", "seed", "morph", "scene/recall", "scene/save"} <= kinds


def test_cue_times_in_bars_beats_and_seconds(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('bpm = 60\n[[cue]]\nbar = 2\nstrength = 0.5\n[[cue]]\nseconds = 1.5\nseed = 1\n'
                 '[[cue]]\nbeat = 1\nprompt = "x"\n')
    _, cues = vj_cues.read_cues(p)
    assert [(c.index, c.due(60)) for c in cues] == [(3, 1.0), (2, 1.5), (1, 4.0)]
    p.write_text("[[cue]]\nbar = 1\nbeat = 2\nseed = 1\n")
    with pytest.raises(ValueError, match="exactly one"):
        vj_cues.read_cues(p)


@pytest.mark.slow
def test_cue_player_lands_each_cue_in_order_on_a_real_run(tmp_path):
    port = _free_port()
    proc = _start(tmp_path, "--model", "tiny", "--source", "pattern:64x64@30", "--sink", "null", "--width", "64",
                  "--height", "64", "--osc-port", str(port), "--telemetry", "off")
    client = Client(port)
    cues = tmp_path / "cues.toml"
    cues.write_text(CUES)
    player = None
    try:
        client.status(timeout=120)
        player = subprocess.Popen([sys.executable, str(EXAMPLES / "vj_cues.py"), str(cues), "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = client.status(10)
            seen.append((st["/dreamwire/state/prompt"][0], round(st["/dreamwire/state/strength"][0], 3),
                         st["/dreamwire/state/seed"][0], tuple(st["/dreamwire/state/scenes"]),
                         st["/dreamwire/state/tempo"][0]))
            if player.poll() is not None and seen[-1][0] == "cue one" and len(seen) > 5:
                break
            time.sleep(0.05)
        out = player.communicate(timeout=10)[0]
        assert player.returncode == 0, out
    finally:
        client.close()
        if player is not None and player.poll() is None:
            player.kill()
        if proc.poll() is None:
            _stop(proc, tmp_path)
    assert [line.split()[1] for line in out.splitlines() if line.startswith("cue ")] == ["1", "2", "3", "4"]

    def first(pred):
        return next((i for i, s in enumerate(seen) if pred(s)), None)

    one = first(lambda s: s[0] == "cue one" and s[1] == 0.3 and s[3] == (1,))
    two = first(lambda s: s[0] == "cue two" and s[2] == 5)
    morphing = first(lambda s: s[0] == "cue two" and 0.3 < s[1] < 0.9)
    morphed = first(lambda s: s[0] == "cue two" and s[1] == 0.9)
    back = max(i for i, s in enumerate(seen) if s[0] == "cue one" and s[1] == 0.3 and s[2] == 2)
    assert None not in (one, two, morphing, morphed), (one, two, morphing, morphed, seen)
    assert one < two < morphing < morphed < back, seen
    assert seen[-1][4] == 240.0  # the player set the runtime's tempo
    assert "pipeline" not in _log(tmp_path)


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_osc_monitor_prints_values_from_a_telemetry_sender():
    port = _free_udp()
    mon = subprocess.Popen([sys.executable, str(EXAMPLES / "osc_monitor.py"), "--port", str(port), "--once",
                            "--seconds", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    push = build_bundle([build_message("/dreamwire/stats/fps", [29.5]),
                         build_message("/dreamwire/stats/latency_ms", [41.25]),
                         build_message("/dreamwire/stats/engine_ms", [12.5]),
                         build_message("/dreamwire/health", ["degraded", "engine step failed"])])
    error = build_message("/dreamwire/error", ["/dreamwire/strength", "strength: 5 is outside 0 .. 1"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        assert mon.stdout.readline().startswith("osc_monitor: listening")
        tx.sendto(error, ("127.0.0.1", port))
        deadline = time.monotonic() + 30
        while mon.poll() is None and time.monotonic() < deadline:
            tx.sendto(push, ("127.0.0.1", port))
            time.sleep(0.1)
    out = mon.communicate(timeout=10)[0]
    assert mon.returncode == 0, out
    last = out.strip().splitlines()[-1]
    assert "fps   29.5" in last and "latency    41.2 ms" in last and "engine   12.5 ms" in last, last
    assert "health degraded" in last and "/dreamwire/strength: strength: 5 is outside 0 .. 1" in last
