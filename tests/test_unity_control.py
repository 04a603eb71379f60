"""examples/unity/DreamwireControl.cs, type-checked by Mono's compiler and driven frame by frame.

Unity itself is not here, so the MonoBehaviour is compiled against tests/data/unity_engine_stub.cs (the
few UnityEngine types it uses, with Unity's signatures) and its Update loop is driven by a console
program. What is checked is the component's own logic: only changed fields go out, one frame's changes
as one bundle, every packet valid for the control schema, and telemetry shown in its fields.
"""

from __future__ import annotations

import socket
import subprocess
import time

from dreamwire.control.schema import SPECS
from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.wire import build_bundle, build_message, parse_packet
from tests.fakes.mono import ENV, MCS, MONO, ROOT, needs_mono

pytestmark = needs_mono
SOURCES = [ROOT / "examples" / "unity" / "DreamwireOsc.cs", ROOT / "examples" / "unity" / "DreamwireControl.cs",
           ROOT / "tests" / "data" / "unity_engine_stub.cs", ROOT / "tests" / "data" / "unity_control_driver.cs"]


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    return s


def _messages(packet: bytes) -> list[tuple[str, list]]:
    return [(m.address, [round(a, 4) if isinstance(a, float) else a for a in m.args]) for m in parse_packet(packet)]


def test_the_control_sends_only_changes_one_bundle_a_frame_and_shows_telemetry(tmp_path):
    exe = tmp_path / "unity_control.exe"
    built = subprocess.run([MCS, "-warn:4", "-warnaserror", f"-out:{exe}", *map(str, SOURCES)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    osc, telemetry_port = _udp(), _udp()
    telemetry = telemetry_port.getsockname()[1]
    telemetry_port.close()  # the component binds it
    proc = subprocess.Popen([MONO, str(exe), str(osc.getsockname()[1]), str(telemetry)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    packets: list[bytes] = []
    try:
        assert proc.stdout.readline().strip() == "listening"
        push = build_bundle([build_message("/dreamwire/stats/fps", [29.5]),
                             build_message("/dreamwire/stats/latency_ms", [41.25]),
                             build_message("/dreamwire/stats/engine_ms", [12.5]),
                             build_message("/dreamwire/health", ["degraded", "engine step failed"])])
        error = build_message("/dreamwire/error", ["/dreamwire/strength", "strength: 5 is outside 0 .. 1"])
        deadline = time.perf_counter() + 60
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            while proc.poll() is None and time.perf_counter() < deadline:
                tx.sendto(push, ("127.0.0.1", telemetry))
                tx.sendto(error, ("127.0.0.1", telemetry))
                time.sleep(0.05)
        while len(packets) < 10:
            try:
                packets.append(osc.recv(65535))
            except TimeoutError:
                break
        out = proc.communicate(timeout=30)[0]
    finally:
        osc.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out

    first, *rest = packets
    assert first.startswith(b"#bundle\0")
    sent = dict(_messages(first))
    names = ["prompt", "negative_prompt", "strength", "steps", "guidance_scale", "delta", "seed", "similarity_filter",
             "similarity_threshold", "similarity_max_skip", "latent_feedback", "pause", "bypass", "quantize",
             "prompt_blend", "seed_blend", "t_index_list", "controlnet_scale", "controlnet_enabled", "controlnet_start",
             "controlnet_end"]
    assert list(sent) == [f"/dreamwire/{n}" for n in names]
    assert set(names) == set(SPECS)  # every live parameter has a field
    # the inspector's defaults are the runtime's own, so enabling the component changes nothing
    defaults = ParamState().params
    for n in names:
        want = SPECS[n].kind.to_osc(getattr(defaults, n))  # lists: empty, sent as a message with no arguments
        assert sent[f"/dreamwire/{n}"] == [round(a, 4) if isinstance(a, float) else a for a in want], n
    assert [_messages(p) for p in rest] == [
        [("/dreamwire/strength", [0.7])],  # frame 2 sent nothing, frame 3 only what changed
        [("/dreamwire/guidance_scale", [2.0]), ("/dreamwire/seed", [99]), ("/dreamwire/quantize", ["bar"])],
        [("/dreamwire/prompt_blend", ["city", 0.7, "forest", 0.3]), ("/dreamwire/controlnet_scale", [0.5])],
        [("/dreamwire/prompt_blend", ["city", 0.7, "forest", 0.5])],  # an in-place edit is a change too
        [("/dreamwire/scene/save", [3])],
        [("/dreamwire/scene/recall", [3, 2.0])],
        [("/dreamwire/morph", ["prompt", "a forest at dawn", 4.0, "ease"])],  # and no direct prompt after it
        [("/dreamwire/morph", ["strength", 0.2, 1.5, "ease_in"])],
        _messages(rest[-1]),  # Send All: checked below
    ]
    again = dict(_messages(rest[-1]))
    assert list(again) == list(sent) and rest[-1].startswith(b"#bundle\0")
    assert {a: again[a] for a in ("/dreamwire/prompt", "/dreamwire/strength", "/dreamwire/seed",
                                  "/dreamwire/quantize")} == {"/dreamwire/prompt": ["a forest at dawn"],
                                                              "/dreamwire/strength": [0.7], "/dreamwire/seed": [99],
                                                              "/dreamwire/quantize": ["bar"]}
    assert rest[1].startswith(b"#bundle\0")
    handler = OscHandler(ParamState(), lambda: {})
    for p in packets:  # every packet is one the runtime accepts, in this order
        assert handler.handle(p).errors == [], _messages(p)
    shown = [line for line in out.splitlines() if line.startswith("shown ")]
    assert shown == ["shown 29.5 | 41.25 | 12.5 | degraded: engine step failed | "
                     "/dreamwire/strength: strength: 5 is outside 0 .. 1"], out
    assert "warning: dreamwire rejected /dreamwire/strength: strength: 5 is outside 0 .. 1" in out
