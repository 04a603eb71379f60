"""examples/unity/DreamwireOsc.cs, compiled with Mono's real C# compiler and run against dreamwire's own OSC.

The Unity script is hand-written C#, so only a compiler and the real server can say it speaks exactly
the OSC dreamwire accepts: its bytes are compared with python-osc's and parsed by the strict server
parser, its decoder reads what the server sends, and a console program built on it steers a real
`dreamwire run` on loopback. CI installs `mono-mcs` and `mono-runtime` (.ci/run); elsewhere the tests
skip, saying so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dreamwire.osc.wire import build_bundle, build_message, parse_packet
from tests.fakes.mono import ENV, MCS, MONO, ROOT, needs_mono
from tests.fakes.runtime import Client, free_port, run_log, start_run, stop_run

SOURCES = [ROOT / "examples" / "unity" / "DreamwireOsc.cs", ROOT / "tests" / "data" / "unity_console.cs"]
pytestmark = needs_mono


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unity") / "unity_console.exe"
    built = subprocess.run([MCS, "-warn:4", "-warnaserror", f"-out:{out}", *map(str, SOURCES)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _mono(exe: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    ran = subprocess.run([MONO, str(exe), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                         env=ENV)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def test_the_csharp_encoder_writes_the_bytes_python_osc_writes(exe):
    lines = _mono(exe, "encode").splitlines()
    expected = [
        build_message("/dreamwire/prompt", ["neon jungle, déjà vu"]),
        build_message("/dreamwire/strength", [0.55]),
        build_message("/dreamwire/seed", [-7]),
        build_message("/dreamwire/pause", [True]),
        build_message("/dreamwire/bypass", [False]),
        build_message("/dreamwire/beat", []),
        build_message("/dreamwire/morph", ["strength", 0.8, 4.0, "ease", "beats"]),
        build_bundle([build_message("/dreamwire/seed", [1234]), build_message("/dreamwire/guidance_scale", [3.5])]),
    ]
    packets = [bytes.fromhex(line) for line in lines[:len(expected)]]
    for got, want in zip(packets, expected, strict=True):
        assert got == want, (got, want)
    # ... and the server's strict parser reads them with the types Unity meant
    assert parse_packet(packets[3])[0].tags == "T" and parse_packet(packets[4])[0].tags == "F"
    assert [m.tags for m in parse_packet(packets[7])] == ["i", "f"]
    assert lines[len(expected):] == ["rejected: OSC argument of unsupported type Int64 for /dreamwire/seed"]


def test_the_csharp_decoder_reads_what_the_server_sends_and_rejects_damage(exe):
    status_like = build_bundle([build_message("/dreamwire/state/prompt", ["city at night"]),
                                build_message("/dreamwire/state/seed", [42]),
                                build_message("/dreamwire/stats/fps", [29.5]),
                                build_message("/dreamwire/state/scenes", [])])
    error = build_message("/dreamwire/error", ["/dreamwire/strength", "strength: 5 is outside 0 .. 1"])
    truncated = build_message("/dreamwire/stats/fps", [29.5])[:-4]
    padded_wrong = build_message("/dreamwire/state/prompt", ["abc"]) + b"\0\0\0\0"
    stdin = "\n".join(p.hex() for p in (status_like, error, truncated, padded_wrong)) + "\n"
    out = _mono(exe, "decode", stdin=stdin).splitlines()
    assert out[0] == ("/dreamwire/state/prompt s city at night ; /dreamwire/state/seed i 42 ; "
                      "/dreamwire/stats/fps f 29.5 ; /dreamwire/state/scenes  ")
    assert out[1] == "/dreamwire/error ss /dreamwire/strength strength: 5 is outside 0 .. 1"
    assert out[2].startswith("malformed: ") and out[3].startswith("malformed: "), out


def _lines(out: str, kind: str) -> dict[str, str]:
    """``kind name rest`` lines -> {name: rest}, the last one winning."""
    found = {}
    for line in out.splitlines():
        if line.startswith(kind + " "):
            _, name, rest = (line + " ").split(" ", 2)
            found[name] = rest.strip()
    return found


@pytest.mark.slow
def test_a_csharp_client_steers_a_real_run_and_hears_its_errors(exe, tmp_path):
    port, telemetry = free_port(), free_port()
    proc = start_run(tmp_path, "--model", "tiny", "--source", "pattern:64x64@30", "--sink", "null", "--width", "64",
                  "--height", "64", "--osc-port", str(port), "--telemetry", f"127.0.0.1:{telemetry}",
                  "--osc-telemetry-period", "0.2")
    client = Client(port)
    try:
        client.status(timeout=120)  # up and answering
        out = _mono(exe, str(port), str(telemetry), timeout=240)
        st = client.status(30)
    finally:
        client.close()
        if proc.poll() is None:
            stop_run(proc, tmp_path)
    assert out.splitlines()[-1] == "done", out
    # applied, as Python's own client reads the state: the messages and the bundle all landed ...
    assert st["/dreamwire/state/prompt"] == ["a lighthouse painted from unity"]
    assert st["/dreamwire/state/seed"] == [1234]
    assert st["/dreamwire/state/guidance_scale"] == [pytest.approx(3.5)]
    assert st["/dreamwire/state/similarity_filter"] == [1]
    # ... and the out-of-range strength that came after 0.65 changed nothing, and came back as an error
    assert st["/dreamwire/state/strength"] == [pytest.approx(0.65)]
    errors = [line for line in out.splitlines() if line.startswith("error ")]
    assert errors == ["error /dreamwire/strength | strength: 5 is outside 0 .. 1"], out
    assert "rejected: /dreamwire/strength" in run_log(tmp_path)
    # the C# decoder read the status bundle the way python-osc does, types included
    state = _lines(out, "state")
    assert state["prompt"] == "s a lighthouse painted from unity"
    assert state["seed"] == "i 1234" and state["similarity_filter"] == "i 1"
    assert state["strength"].startswith("f 0.65") and state["guidance_scale"] == "f 3.5"
    assert set(state) >= {name.rsplit("/", 1)[1] for name in st if name.startswith("/dreamwire/state/")}
    stats = _lines(out, "stats")
    assert {"fps", "latency_ms", "engine_ms", "osc_errors"} <= set(stats)
    assert float(stats["osc_errors"]) >= 1
