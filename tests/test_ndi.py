"""Real NDI over loopback: dreamwire's NDI source and sink against plain ndi-python peers.

Each scenario runs in ``tests/fakes/ndi_peers.py`` as a subprocess inside a private
network namespace (``unshare -n`` with only ``lo`` up): NDI ports cannot clash
with other runs and no packet leaves the machine. Where ``unshare -n`` is not
permitted the scenarios run in the host namespace with unique sender names, and
the connect-by-fixed-port case is skipped. Content is checked by PSNR and by
frame ids drawn in big flat blocks, never by bytes (NDI is lossy). The real
tests (marker ``ndi``) skip when ndi-python is missing; the URI parsing, name
matching and packing tests at the end need no NDI runtime.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dreamwire.bridges import _ndifind, _ndilib
from dreamwire.bridges._common import FourChannelPacker
from dreamwire.bridges._ndifind import listeners, loopback_fanout
from dreamwire.bridges._ndilib import Target, match_source, stream_name
from dreamwire.bridges.base import BridgeError, make_source

HELPERS = Path(__file__).parent / "fakes" / "ndi_peers.py"
ROOT = HELPERS.parents[1]
MIN_PSNR = 35.0


def ndi_runtime() -> None:
    pytest.importorskip("NDIlib", reason="ndi-python is not installed (pip install 'dreamwire[ndi]')",
                        exc_type=ImportError)


real_ndi = pytest.mark.ndi


@functools.cache
def netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    return probe.returncode == 0


def run_scenario(*args: str, timeout: float = 40) -> dict:
    command = [sys.executable, str(HELPERS), *args]
    if netns_available():
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"result"')]
    assert proc.returncode == 0 and lines, f"scenario {args} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])["result"]


def assert_good_frames(frames: list[dict]) -> None:
    ids = [f["id"] for f in frames]
    assert ids == sorted(set(ids)), f"frame ids must only increase: {ids}"
    assert all(f["timecode"] == f["id"] * 1000 + 7 for f in frames), "NDI timecode was not passed through"
    assert min(f["psnr"] for f in frames) > MIN_PSNR
    assert all(f["layout"] == "BGRA" and f["dtype"] == "uint8" for f in frames)
    assert [f["frame_id"] for f in frames] == sorted(f["frame_id"] for f in frames)


@real_ndi
def test_source_receives_from_a_real_sender_by_name_and_by_address():
    ndi_runtime()
    result = run_scenario("source")
    assert f"({result['name']})" in " ".join(result["listed"]), "list_senders() did not show the test sender"
    by_name = result["by_name"]
    assert len(by_name) > 20
    assert_good_frames(by_name)
    assert {tuple(f["size"]) for f in by_name} == {(256, 256), (192, 320)}, "resolution change not followed"
    assert by_name[0]["meta_rate"] == [60, 1]
    assert len(result["by_address"]) >= 10
    assert_good_frames(result["by_address"])


@real_ndi
def test_sink_is_read_by_a_real_receiver_in_every_layout():
    ndi_runtime()
    result = run_scenario("sink")
    by_layout = {(r["layout"], tuple(r["sent_size"])): r for r in result["results"]}
    for (layout, size), got in by_layout.items():
        assert got["id"] is not None, f"{layout} {size} frame never arrived"
        assert got["psnr"] > MIN_PSNR, (layout, size, got["psnr"])
        assert got["timecode"] == got["id"] * 1000 + 7, "timecode not passed through to the NDI frame"
        assert got["fourcc"] == ("FOURCC_VIDEO_TYPE_BGRA" if "A" in layout[3:] else "FOURCC_VIDEO_TYPE_BGRX")
    # The source's frame rate goes out as the NDI frame's frame_rate_N/D; none (or a nonsense one): the sink's fps.
    rates = [(r["sent_rate"], r["rate"]) for r in result["results"]]
    assert rates == [(rate, list(rate) if rate and rate[0] > 0 else [30, 1]) for rate, _ in rates]
    assert {tuple(r) for r, _ in rates if r} == {(30000, 1001), (60, 1), (25, 1), (0, 1)}
    assert by_layout[("RGB", (129, 255))]["size"] == [130, 256], "odd sizes are padded to even, not cropped"
    assert result["connections"] == 1


@real_ndi
@pytest.mark.parametrize(("by", "stop"), [("name", "kill"), ("address", "stop")])
def test_source_survives_sender_restart(by: str, stop: str):
    ndi_runtime()
    if by == "address" and not netns_available():
        pytest.skip("connecting to the fixed port 127.0.0.1:5961 needs a private network namespace")
    result = run_scenario("reconnect", "--by", by, "--stop", stop)
    assert result["before"] == [], "frames before any sender existed"
    connect = result["connect"]
    assert len(connect) >= 30 and connect[0]["t"] - result["first_ready"] < 2.0, "late sender not picked up"
    assert_good_frames(connect)
    # Sender gone: reads come back empty and on time, so the loop can keep showing its last output.
    assert all(f["t"] < result["gone_at"] + 0.1 for f in result["gap"]), "frames after the sender died"
    # A read may run long while a finder is (re)created on a loaded machine, but it never waits for the
    # sender to return: at least 10 reads complete within the 1.5 s gap.
    assert result["gap_read_max_s"] < 1.0 and result["gap_reads"] >= 10
    resumed = [f for f in result["resumed"] if f["id"] >= 5000]
    assert len(resumed) >= 20, "never resumed from the restarted sender"
    assert resumed[0]["t"] - result["second_ready"] < 2.0, "took more than 2 s to resume"
    assert_good_frames(resumed)


@real_ndi
@pytest.mark.slow
def test_dreamwire_sources_lists_every_sending_process_on_the_host():
    """Two plain sender processes and dreamwire's own NDI sink in one namespace, no mDNS daemon: every NDI
    process listens on 5960 and one query reaches one of them, so a single 127.0.0.1 query listed one in three."""
    ndi_runtime()
    result = run_scenario("listing", "--calls", "10", timeout=240)
    wanted = {f"({name})" for name in result["names"]}
    for call in result["calls"]:
        assert call["rc"] == 0, call["stderr"]
    found = [sum(any(listed.endswith(w) for listed in call["listed"]) for w in wanted) for call in result["calls"]]
    assert found == [3] * 10, f"sources listed per call (of 3): {found}"


@real_ndi
@pytest.mark.slow
def test_sender_restarts_reconnect_within_2s_beside_our_own_ndi_sink():
    """20 restarts (killed or stopped, 0.2-3 s apart) of the sender an NDISource reads by name, in a process
    that also runs dreamwire's NDISink, with another sender process up: each reconnects within 2 s."""
    ndi_runtime()
    result = run_scenario("restarts", "--restarts", "20", timeout=240)
    times = [r["reconnect_s"] for r in result["restarts"]]
    assert len(times) == 20 and None not in times, f"restarts never picked up: {times}"
    assert max(times) < 2.0, f"reconnect times (s): {times}"
    assert all(not r["wrong_ids"] for r in result["restarts"]), "frames from another sender"


@real_ndi
def test_loop_keeps_sending_through_a_sender_restart_and_resumes_from_the_new_sender(request):
    """Runtime level: NDISource -> FrameLoop (tiny engine) -> live sink while the sender dies and returns.

    Outputs carry their input's NDI timecode (``id * 1000 + 7``): sender 1 counts from 0, sender 2 from 5000.
    """
    ndi_runtime()
    request.getfixturevalue("tiny_dir")  # build the tiny model into DREAMWIRE_CACHE once, for the subprocess
    result = run_scenario("loop-reconnect", timeout=90)
    outs, gone_at, back_at = result["outputs"], result["gone_at"], result["second_ready"]
    assert result["stats"]["errors"] == 0, result["stats"]
    assert all(o["size"] == [256, 256] and o["layout"] == "BGRA" for o in outs), "outputs lost the input's shape"
    assert all(f"({result['name']})" in o["ndi_source"] for o in outs)
    assert all(o["timecode"] % 1000 == 7 for o in outs), "NDI timecode did not reach the outputs"
    sender_id = [o["timecode"] // 1000 for o in outs]
    first = [o for o, i in zip(outs, sender_id) if o["t"] < gone_at and i < 5000 and not o["held"]]
    assert result["connected"] and len(first) >= 20, "the loop never ran on sender 1's frames"

    # Sender 1 gone: the loop lives on, repeating its last output (held) and inventing no new frames.
    gap = [o for o in outs if gone_at <= o["t"] < back_at]
    held = [o for o in gap if o["held"]]
    assert result["alive_in_gap"]
    assert len(held) >= 3 and max(o["t"] for o in held) > gone_at + 0.75, "output stopped while the source was gone"
    for n, o in enumerate(outs):
        if o["held"]:
            last = next(p for p in reversed(outs[:n]) if not p["held"])
            assert o["frame_id"] == last["frame_id"], "a held frame must repeat the last output"
    assert all(o["capture_t"] < gone_at + 0.1 for o in gap if not o["held"]), "frames after the sender died"

    # Sender 2: within 2 s the outputs come from its frames, and from nothing older after that.
    fresh = [n for n, (o, i) in enumerate(zip(outs, sender_id)) if i >= 5000 and not o["held"]]
    assert result["resumed"] and len(fresh) >= 20, "the loop never resumed from the restarted sender"
    assert outs[fresh[0]]["t"] - back_at < 2.0, "took more than 2 s to resume"
    after = [i for o, i in zip(outs[fresh[0]:], sender_id[fresh[0]:]) if not o["held"]]
    assert all(i >= 5000 for i in after) and after == sorted(after), "frames out of order after the restart"
    assert result["stats"]["held"] >= len(held)


# --- logic that needs no NDI runtime -------------------------------------------------------


@pytest.mark.parametrize(
    ("rest", "target"),
    [
        ("", Target("")),
        ("  TD out ", Target("TD out")),
        ("STUDIO (TD out)", Target("STUDIO (TD out)")),
        ("@127.0.0.1:5961", Target("", address="127.0.0.1:5961")),
        ("cam@10.0.0.7:5962", Target("cam", address="10.0.0.7:5962")),
        ("cam@studio-pc", Target("cam", hosts=("studio-pc",))),
        ("@[::1]:5961", Target("", address="[::1]:5961")),
        ("me@home (x)", Target("me@home (x)")),  # not an address after the @: all of it is the name
    ],
)
def test_uri_forms(rest: str, target: Target):
    assert Target.parse(rest) == target


def test_name_matching_prefers_exact_then_stream_name_then_case():
    found = [("B-PC (TD out)", "10.0.0.2:5961"), ("A-PC (TD out)", "10.0.0.1:5961"), ("A-PC (td OUT 2)", "x:1")]
    assert match_source("B-PC (TD out)", found) == [("B-PC (TD out)", "10.0.0.2:5961")]
    assert [h[0] for h in match_source("TD out", found)] == ["A-PC (TD out)", "B-PC (TD out)"]
    assert match_source("td out 2", found) == [("A-PC (td OUT 2)", "x:1")]
    assert match_source("nope", found) == []
    assert match_source("", found)[0][0] == "A-PC (TD out)"
    assert stream_name("PC (Cam (1))") == "Cam (1)"


def test_the_first_source_is_never_this_processes_own_output():
    """``ndi:`` (no name) with ``--sink ndi:dreamwire`` must not loop dreamwire's output back into itself."""
    found = [("PC (dreamwire)", "127.0.0.1:5961"), ("PC (TD out)", "127.0.0.1:5962")]
    assert len(match_source("", found)) == 2  # someone else's "dreamwire" is a fine first source
    _ndilib.sending("dreamwire", True)
    try:
        assert match_source("", found) == [("PC (TD out)", "127.0.0.1:5962")]
        assert match_source("dreamwire", found) == [("PC (dreamwire)", "127.0.0.1:5961")]  # asked by name: allowed
    finally:
        _ndilib.sending("dreamwire", False)
    assert len(match_source("", found)) == 2


def test_discovery_asks_loopback_first_then_the_users_ips_and_hosts():
    one = ["127.0.0.1"]
    assert _ndifind.discovery_ips(None, loopback=one) == ["127.0.0.1"]
    assert _ndifind.discovery_ips("10.0.0.5, 10.0.0.6", ("studio",), loopback=one) == [
        "127.0.0.1", "10.0.0.5", "10.0.0.6", "studio"]
    assert _ndifind.discovery_ips(["127.0.0.1", "h"], loopback=["127.0.0.1", "127.0.0.2"]) == [
        "127.0.0.1", "127.0.0.2", "h"]
    assert _ndifind.describe(["127.0.0.1", "127.0.0.2", "127.0.0.3", "studio"]) == "127.0.0.1-127.0.0.3, studio"


def test_loopback_fanout_reaches_every_local_process_with_a_stated_chance(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert loopback_fanout(None) == loopback_fanout(0) == loopback_fanout(1) == ["127.0.0.1"]
    for processes in (2, 3, 5, 10):
        ips = loopback_fanout(processes)
        n = len(ips)
        assert ips == [f"127.0.0.{i}" for i in range(1, n + 1)]
        assert processes * (1 - 1 / processes) ** n <= 1e-4 < processes * (1 - 1 / processes) ** (n - 1)
    assert len(loopback_fanout(100)) == 254, "127.0.0.255 is not a host address"
    monkeypatch.setattr(sys, "platform", "win32")  # measured on Linux only: elsewhere ask 127.0.0.1 alone
    assert loopback_fanout(3) == ["127.0.0.1"]


def test_listeners_counts_sockets_listening_on_the_ndi_messaging_port(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    tail = "00000000:00000000 00:00000000 00000000 0 0 1 1 0000000000000000 100 0 0 10 0\n"
    rows = [("00000000:1748", "00000000:0000", "0A"),  # 0.0.0.0:5960 LISTEN
            ("00000000:1748", "00000000:0000", "0A"),  # another process's
            ("0100007F:1748", "0100007F:9C40", "01"),  # an established query
            ("00000000:1749", "00000000:0000", "0A")]  # a data port
    tcp, tcp6 = tmp_path / "tcp", tmp_path / "tcp6"
    tcp.write_text(header + "".join(f"   {i}: {local} {remote} {state} {tail}"
                                    for i, (local, remote, state) in enumerate(rows)))
    tcp6.write_text(header + f"   0: {'0' * 32}:1748 {'0' * 32}:0000 0A {tail}")
    assert listeners(tables=[str(tcp), str(tcp6)]) == 3
    assert listeners(tables=[str(tmp_path / "absent")]) is None


def test_missing_ndi_python_is_a_clear_error(monkeypatch):
    from dreamwire.bridges import ndi

    monkeypatch.setitem(sys.modules, "NDIlib", None)
    with pytest.raises(BridgeError, match=r"pip install 'dreamwire\[ndi\]'"):
        make_source("ndi:TD out")
    with pytest.raises(BridgeError, match="ndi-python"):
        ndi.list_senders()


def test_runtime_is_initialized_once_and_destroyed_by_the_last_user():
    calls: list[str] = []
    lib = types.SimpleNamespace(initialize=lambda: calls.append("init") or True,
                                destroy=lambda: calls.append("destroy"))
    _ndilib.acquire(lib)
    _ndilib.acquire(lib)
    _ndilib.release(lib)
    assert calls == ["init"]
    _ndilib.release(lib)
    _ndilib.release(lib)  # an extra release is harmless
    assert calls == ["init", "destroy"]


def test_rgb_frames_are_packed_as_x_formats_without_new_buffers():
    packer = FourChannelPacker()
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    packed, order, alpha = packer.pack(rgb, "RGB")
    assert (order, alpha) == ("RGBA", False) and packed.shape == (2, 3, 4)
    np.testing.assert_array_equal(packed[..., :3], rgb)
    assert (packed[..., 3] == 255).all()
    again, _, _ = packer.pack(rgb[::-1].copy(), "BGR")
    assert again is packed
    bgra = np.zeros((2, 2, 4), np.uint8)
    assert packer.pack(bgra, "BGRA") == (bgra, "BGRA", True)


def test_received_frames_get_opaque_alpha_and_unusable_formats_are_dropped_once(monkeypatch, caplog):
    from dreamwire.bridges import ndi

    monkeypatch.setattr(ndi._ndilib, "load", lambda: types.SimpleNamespace())  # no runtime needed here
    source = ndi.NDISource("x")

    def video(fourcc: str, channels: int = 4) -> types.SimpleNamespace:
        return types.SimpleNamespace(FourCC=types.SimpleNamespace(name=fourcc),
                                     data=np.zeros((2, 4, channels), np.uint8), timestamp=5, timecode=123,
                                     frame_rate_N=30000, frame_rate_D=1001,
                                     line_stride_in_bytes=4 * channels, xres=4)

    frame = source._to_frame(video("FOURCC_VIDEO_TYPE_RGBX"))
    assert frame.layout == "RGBA" and (frame.pixels[..., 3] == 255).all()
    assert (frame.timecode, frame.frame_rate, frame.frame_id) == (123, (30000, 1001), 1)
    caplog.set_level("ERROR", logger="dreamwire.bridges.ndi")
    assert source._to_frame(video("FOURCC_VIDEO_TYPE_UYVY", 2)) is None
    assert source._to_frame(video("FOURCC_VIDEO_TYPE_UYVY", 2)) is None
    assert len([r for r in caplog.records if "unexpected format" in r.message]) == 1


def test_a_fresh_probe_wins_over_what_the_lasting_finder_still_lists(monkeypatch):
    """A restarted sender has a new data port; the lasting finder may still list the old one."""
    from dreamwire.bridges import ndi

    connects: list[str] = []

    class Finder(types.SimpleNamespace):
        def listed(self) -> list[types.SimpleNamespace]:
            fanned_out = "127.0.0.2" in self.ips.split(",")
            url = "127.0.0.2:5977" if fanned_out else "127.0.0.1:5961"  # a probe sees the restarted process
            return [types.SimpleNamespace(ndi_name="VM (TD)", url_address=url)]

    lib = types.SimpleNamespace(
        initialize=lambda: True, destroy=lambda: None, FindCreate=types.SimpleNamespace,
        find_create_v2=lambda settings: Finder(ips=settings.extra_ips),
        find_get_current_sources=lambda finder: finder.listed(), find_wait_for_sources=lambda f, ms: True,
        find_destroy=lambda finder: None, RecvCreateV3=types.SimpleNamespace, recv_create_v3=lambda s: object(),
        RECV_COLOR_FORMAT_BGRX_BGRA=0, RECV_BANDWIDTH_HIGHEST=0, recv_destroy=lambda recv: None,
        recv_get_no_connections=lambda recv: 0, Source=lambda name, url: types.SimpleNamespace(url=url),
        recv_connect=lambda recv, source: connects.append(source.url))
    monkeypatch.setattr(ndi._ndilib, "load", lambda: lib)
    monkeypatch.setattr(_ndifind, "listeners", lambda: 3)
    monkeypatch.setattr(sys, "platform", "linux")
    with ndi.NDISource("TD") as source:
        assert len(source._finder.ips) == len(loopback_fanout(3))
    assert connects == ["127.0.0.2:5977"]


@pytest.mark.parametrize(("fps", "rate"), [
    (29.97, (30000, 1001)), (59.94, (60000, 1001)), (23.976, (24000, 1001)), (23.98, (24000, 1001)),
    (119.88, (120000, 1001)), (30000 / 1001, (30000, 1001)),
    (30, (30, 1)), (60.0, (60, 1)), (24, (24, 1)), (25, (25, 1)), (12.5, (25, 2)), (1, (1, 1)), (0.5, (1, 2)),
])
def test_sink_frame_rate_uses_the_exact_ntsc_fractions(monkeypatch, fps, rate):
    from dreamwire.bridges import ndi

    assert ndi.frame_rate(fps) == rate
    monkeypatch.setattr(ndi._ndilib, "load", lambda: types.SimpleNamespace())  # no runtime needed here
    assert ndi.NDISink("x", fps=fps)._rate == rate, "the rate a sink sends when its frames carry none"


@pytest.mark.parametrize("fps", [0, -30, float("nan"), float("inf")])
def test_sink_frame_rate_refuses_nonsense(fps):
    from dreamwire.bridges import ndi

    with pytest.raises(BridgeError, match="frame rate"):
        ndi.frame_rate(fps)
