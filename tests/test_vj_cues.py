"""examples/vj_cues.py against a real `dreamwire run --model tiny`, and examples/osc_monitor.py on telemetry."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.wire import build_bundle, build_message
from tests.fakes.runtime import Client, free_port, run_log, start_run, stop_run

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
    settings, cues, problems = vj_cues.read_cues(EXAMPLES / "cues.toml")
    assert problems == [] and vj_cues.check_cues(settings, cues, vj_cues.dreamwire_schema()) == []
    h = OscHandler(ParamState(), lambda: {})
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
    _, cues, _ = vj_cues.read_cues(p)
    assert [(c.index, c.due(60)) for c in cues] == [(3, 1.0), (2, 1.5), (1, 4.0)]
    p.write_text("[[cue]]\nbar = 1\nbeat = 2\nseed = 1\n")
    _, cues, problems = vj_cues.read_cues(p)
    assert cues == [] and [(x.cue, "exactly one" in x.text) for x in problems] == [(1, True)]


BROKEN = """
bpm = 240
bmp = 120
[[cue]]
name = "typo"
beat = 0
prompt = "cue one"
strenght = 0.3
[[cue]]
beat = 4
strength = 2.0
[[cue]]
beat = 8
scene = 5
[[cue]]
beat = 12
morph = { name = "strength", target = 0.5, time = 4, curve = "wobble" }
[[cue]]
beat = 16
save = 5
[[cue]]
beat = 20
scene = 5
"""


def test_check_reports_every_problem_of_a_broken_list_with_its_cue_and_sends_nothing(tmp_path, capsys):
    cues = tmp_path / "broken.toml"
    cues.write_text(BROKEN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as runtime:  # stands where dreamwire would listen
        runtime.bind(("127.0.0.1", 0))
        runtime.settimeout(0.3)
        port = str(runtime.getsockname()[1])
        assert vj_cues.main([str(cues), "--check"]) == 2
        checked = capsys.readouterr().err
        assert vj_cues.main([str(cues), "--port", port, "--listen", "off"]) == 2  # playing checks first too
        played = capsys.readouterr()
        with pytest.raises(TimeoutError):
            runtime.recv(65535)
    assert played.out == "" and played.err == checked
    lines = checked.splitlines()
    assert lines[-1] == f"vj_cues: 4 error(s) in {cues}; nothing sent"
    by_cue = [line.removeprefix(f"{cues}: ") for line in lines[:-1]]
    assert by_cue[0].startswith("settings: error: unknown setting 'bmp' (did you mean 'bpm'?)")
    assert by_cue[1].startswith("cue 1: error: unknown parameter 'strenght' (did you mean 'strength'?)")
    assert by_cue[2] == "cue 2: error: strength: 2 is outside 0 .. 1"
    assert by_cue[3].startswith("cue 3: warning: scene 5 is not saved by an earlier cue")
    assert by_cue[4].startswith("cue 4: error: morph: curve must be one of linear") and "'wobble'" in by_cue[4]
    assert len(by_cue) == 5  # cue 6 recalls scene 5 after cue 5 saved it: fine


@pytest.mark.parametrize("cue", [
    'strength = 0.5', 'strength = 1.5', 'cfg = 2.0', 'guidance = 30.0', 'seed = 3.5', 'steps = 9',
    'quantize = "bar"', 'quantize = "half"', 'pause = true', 'bypass = 2',
    'prompt_blend = [["city", 0.7], ["forest", 0.3]]', 'prompt_blend = ["city", 0.7, "forest"]',
    'prompt_blend = []', 'seed_blend = [[1, 0.5], [2, 0.5]]', 't_index_list = [10, 20]', 't_index_list = [20, 10]',
    'controlnet_scale = [0.5, 1.0]', 'controlnet_scale = [6.0]', 'controlnet_enabled = [true, false]',
    'set = { delta = 0.5, similarity_max_skip = 2000 }', 'save = 1000', 'save = 3', 'scene = 1',
    'morph = { name = "prompt", target = "x", time = 2 }', 'morph = { name = "pause", target = 1, time = 2 }',
    'morph = { name = "seed", target = 4, time = 2, unit = "bars" }', 'scene = 1\nscene_time = -1',
])
def test_check_accepts_exactly_what_the_runtime_accepts(tmp_path, cue):
    """The check and the runtime's OSC handler read each cue's bundle the same way (lists and aliases too)."""
    path = tmp_path / "c.toml"
    path.write_text(f"[[cue]]\nbeat = 0\n{cue}\n")
    settings, cues, problems = vj_cues.read_cues(path)
    assert problems == []
    found = [p for p in vj_cues.check_cues(settings, cues, vj_cues.dreamwire_schema()) if p.fatal]
    h = OscHandler(ParamState(), lambda: {})
    h.rig.scenes.save(1, ParamState().params.as_dict())  # a scene the runtime has, so recalls can pass
    runtime = h.handle(vj_cues.bundle("/dreamwire", cues[0].messages).dgram).errors
    assert bool(found) == bool(runtime), (found, runtime)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PLAYED = """
bpm = 240
[[cue]]
beat = 0
prompt = "cue one"
[[cue]]
name = "ghost"
beat = 4
scene = 5                 # not saved anywhere: the runtime says so
[[cue]]
beat = 6
save = 2
[[cue]]
beat = 8
scene = 2
[[cue]]
name = "last"
beat = 9
scene = 7                 # the last cue fails too: heard after the end
"""


@pytest.mark.slow
def test_player_prints_each_runtime_error_next_to_its_cue_and_exits_1(tmp_path):
    port, errors_port = free_port(), _free_udp_port()
    proc = start_run(tmp_path, "--model", "tiny", "--source", "pattern:64x64@30", "--sink", "null", "--width", "64",
                  "--height", "64", "--osc-port", str(port), "--telemetry", f"127.0.0.1:{errors_port}")
    client = Client(port)
    cues = tmp_path / "cues.toml"
    cues.write_text(PLAYED)
    try:
        client.status(timeout=120)
        player = subprocess.run([sys.executable, str(EXAMPLES / "vj_cues.py"), str(cues), "--port", str(port),
                                 "--listen", str(errors_port)], capture_output=True, text=True, timeout=60)
        st = client.status(10)
    finally:
        client.close()
        if proc.poll() is None:
            stop_run(proc, tmp_path)
    out = player.stdout.splitlines()
    assert player.returncode == 1, (player.stdout, player.stderr)
    assert out.index("cue 2 ghost: error: /dreamwire/scene/recall: scene/recall: scene 5 is not saved (saved: none)") \
        == out.index(next(line for line in out if line.startswith("cue 2 ghost at"))) + 1
    assert "cue 5 last: error: /dreamwire/scene/recall: scene/recall: scene 7 is not saved (saved: 2)" in out
    assert [line.split()[1] for line in out if " at " in line and line.startswith("cue ")] == ["1", "2", "3", "4", "5"]
    assert not any(line.startswith(("cue 1", "cue 3", "cue 4")) and "error" in line for line in out), out
    assert player.stderr.splitlines()[-1] == "vj_cues: 2 of 5 cues failed: 2, 5"
    assert st["/dreamwire/state/scenes"] == [2] and st["/dreamwire/state/prompt"] == ["cue one"]

@pytest.mark.slow
def test_cue_player_lands_each_cue_in_order_on_a_real_run(tmp_path):
    port = free_port()
    errors_port = _free_udp_port()
    proc = start_run(tmp_path, "--model", "tiny", "--source", "pattern:64x64@30", "--sink", "null", "--width", "64",
                  "--height", "64", "--osc-port", str(port), "--telemetry", f"127.0.0.1:{errors_port}")
    client = Client(port)
    cues = tmp_path / "cues.toml"
    cues.write_text(CUES)
    player = None
    try:
        client.status(timeout=120)
        player = subprocess.Popen([sys.executable, str(EXAMPLES / "vj_cues.py"), str(cues), "--port", str(port),
                                   "--listen", str(errors_port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
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
            stop_run(proc, tmp_path)
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
    assert "pipeline" not in run_log(tmp_path)


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
        deadline = time.perf_counter() + 30
        while mon.poll() is None and time.perf_counter() < deadline:
            tx.sendto(push, ("127.0.0.1", port))
            time.sleep(0.1)
    out = mon.communicate(timeout=10)[0]
    assert mon.returncode == 0, out
    last = out.strip().splitlines()[-1]
    assert "fps   29.5" in last and "latency    41.2 ms" in last and "engine   12.5 ms" in last, last
    assert "health degraded" in last and "/dreamwire/strength: strength: 5 is outside 0 .. 1" in last
