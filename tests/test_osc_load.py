"""The control surface under load, through a real `dreamwire run` (issue 18, points 25, 26 and 27).

Figures, not timing asserts: run with ``-s`` to see them.

    .venv/bin/python -m pytest -q -s -m slow tests/test_osc_load.py

The asserts are about behaviour only: the quiet client is answered while another floods, control
changes take effect during a save storm, SIGINT ends the run, and the scenes file holds scenes no
older than the last one acknowledged before the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pythonosc import slip
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage

from dreamwire.osc.scenes import SceneStore
from dreamwire.osc.wire import build_message, parse_packet

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            return _free_port()
        return port


def _bundle(*messages: bytes) -> bytes:
    b = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        b.add_content(OscMessage(m))
    return b.build().dgram


def _saves(seed: int, numbers: range) -> bytes:
    return _bundle(build_message("/dreamwire/seed", [seed]),
                   *(build_message("/dreamwire/scene/save", [n]) for n in numbers))


class _Client:
    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def status(self, timeout: float) -> dict[str, list] | None:
        """One status request; the reply, or None when none came within ``timeout``."""
        self.send(build_message("/dreamwire/status", []))
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return None
            msgs = {m.address: m.args for m in parse_packet(data)}
            if "/dreamwire/state/seed" in msgs:
                return msgs
        return None

    def close(self) -> None:
        self.sock.close()


def _flood_udp(port: int, stop: threading.Event, counter: list[int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        status = build_message("/dreamwire/status", [])
        while not stop.is_set():
            s.sendto(status, ("127.0.0.1", port))
            counter[0] += 1
            if counter[0] % 200 == 0:
                time.sleep(0.001)


def _flood_tcp(port: int, stop: threading.Event, counter: list[int]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setblocking(False)
            framed = slip.encode(build_message("/dreamwire/status", [])) * 20
            while not stop.is_set():
                try:
                    s.sendall(framed)
                    counter[0] += 20
                    s.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    time.sleep(0.001)
    except OSError:
        return


def _pcts(values: list[float]) -> str:
    if not values:
        return "none"
    v = sorted(values)
    return (f"p50 {1000 * statistics.median(v):.1f} ms, p95 {1000 * v[int(0.95 * (len(v) - 1))]:.1f} ms, "
            f"max {1000 * v[-1]:.1f} ms (n={len(v)})")


def test_control_surface_under_load_figures(tmp_path: Path) -> None:
    port = _free_port()
    scenes = tmp_path / "scenes.toml"
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dreamwire", "run", "--model", "tiny", "--source", "pattern",
                             "--sink", "null", "--osc-port", str(port), "--scenes", str(scenes),
                             "--telemetry", "off"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    quiet = _Client(port)
    try:
        deadline = time.perf_counter() + 180
        while quiet.status(1.0) is None:
            assert proc.poll() is None and time.perf_counter() < deadline, (tmp_path / "run.log").read_text()

        # --- 25: a quiet UDP client while one UDP sender (same address) and 40 TCP connections flood ---
        stop, sent = threading.Event(), [0]
        flooders = [threading.Thread(target=_flood_udp, args=(port, stop, sent), daemon=True)]
        flooders += [threading.Thread(target=_flood_tcp, args=(port, stop, sent), daemon=True) for _ in range(40)]
        for t in flooders:
            t.start()
        asked = answered = 0
        gaps: list[float] = []
        last = t0 = time.perf_counter()
        while time.perf_counter() - t0 < 10.0:
            asked += 1
            if quiet.status(0.5) is not None:
                answered += 1
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            time.sleep(0.5)
        stop.set()
        for t in flooders:
            t.join(5)
        print(f"\n[25] quiet UDP client: {answered}/{asked} status requests answered in 10 s while another "
              f"UDP sender and 40 TCP connections sent {sent[0]} status requests; longest gap between "
              f"answers {max(gaps, default=float('nan')):.2f} s")
        assert answered >= asked // 2

        # --- 26: 1,000 scenes, then 1,000 saves/s for 6 s; control latency meanwhile ---
        saver = _Client(port)
        t = time.perf_counter()
        saver.send(_saves(1, range(1000)))  # one 36 KB bundle: scenes 0..999
        st = None
        while st is None or st.get("/dreamwire/state/scenes", []) != list(range(1000)):
            st = quiet.status(1.0)
            assert time.perf_counter() - t < 120
        print(f"[26] one bundle saving scenes 0..999: answered after {time.perf_counter() - t:.2f} s")
        stop = threading.Event()
        saves = [0]

        def storm() -> None:
            k = 0
            while not stop.is_set():
                start = time.perf_counter()
                saver.send(_saves(1000 + k, range(10 * (k % 100), 10 * (k % 100) + 10)))
                saves[0] += 10
                k += 1
                time.sleep(max(0.0, 0.01 - (time.perf_counter() - start)))  # 100 bundles of 10 saves a second

        storm_thread = threading.Thread(target=storm, daemon=True)
        storm_thread.start()
        latencies: list[float] = []
        fps: list[float] = []
        missing = 0
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < 6.0:
            k += 1
            value = 0.3 + 0.001 * (k % 100)
            sent_at = time.perf_counter()
            quiet.send(build_message("/dreamwire/strength", [value]))
            while True:
                st = quiet.status(2.0)
                if st is None:
                    missing += 1
                    break
                if abs(st["/dreamwire/state/strength"][0] - value) < 1e-6:
                    latencies.append(time.perf_counter() - sent_at)
                    fps.append(st["/dreamwire/stats/fps"][0])
                    break
            time.sleep(0.1)
        stop.set()
        storm_thread.join(5)
        rate = saves[0] / (time.perf_counter() - t0)
        print(f"[26] during {rate:.0f} saves/s (1,000 scenes in the file): strength change -> seen in status "
              f"{_pcts(latencies)}; {missing} status requests unanswered; fps {min(fps, default=0):.1f}.."
              f"{max(fps, default=0):.1f}")
        assert latencies

        # --- 27: SIGINT during a burst of 300-save bundles ---
        stop = threading.Event()
        seeds: list[int] = []

        def burst() -> None:
            k = 0
            while not stop.is_set():
                seeds.append(5000 + k)
                saver.send(_saves(5000 + k, range(300)))
                k += 1
                time.sleep(0.005)

        burst_thread = threading.Thread(target=burst, daemon=True)
        burst_thread.start()
        time.sleep(1.0)
        st = quiet.status(5.0)
        acknowledged = st["/dreamwire/state/seed"][0] if st else 0
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
        took = time.perf_counter() - t
        stop.set()
        burst_thread.join(5)
        saver.close()
        store = SceneStore.load(scenes)
        on_disk = max(store.get(n)["seed"] for n in store.numbers())  # the newest save's seed, whichever scene
        print(f"[27] SIGINT during a burst of 300-save bundles ({len(seeds)} sent): exit {rc} after {took:.2f} s; "
              f"newest seed in the file {on_disk} (acknowledged before the signal: {acknowledged}, last sent: "
              f"{seeds[-1] if seeds else None})")
        assert rc == 0 and on_disk >= acknowledged
    finally:
        quiet.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


class _TimedSink:
    def __init__(self) -> None:
        self.times: list[float] = []

    def open(self) -> None:
        pass

    def write(self, frame) -> None:
        self.times.append(time.perf_counter())

    def close(self) -> None:
        pass


def test_longest_frame_gap_during_a_flood_of_large_packets_figure(make_engine) -> None:
    """Issue 18.33 (figure only): two senders flood large valid bundles (two 2,000-character prompts and a
    16-entry blend, unchanged, so the engine has nothing to re-encode) at a running loop."""
    from dreamwire.bridges.pattern import PatternSource
    from dreamwire.live.loop import FrameLoop
    from dreamwire.live.state import ParamState
    from dreamwire.live.telemetry import Stats
    from dreamwire.osc.server import OscServer, OscSettings

    engine = make_engine(width=64, height=64)
    state, stats, sink = ParamState(), Stats(), _TimedSink()
    osc = OscServer(state, stats.snapshot, OscSettings(port=0, telemetry=None)).start()
    loop = FrameLoop(engine, PatternSource("64x64@0"), sink, state, stats=stats).start()
    text = ("a lighthouse in a storm, " * 80)[:2000]
    blend = [x for i in range(16) for x in (f"{text[:100]} {i}", 1.0)]
    packet = _bundle(build_message("/dreamwire/prompt", [text]), build_message("/dreamwire/negative_prompt", [text]),
                     build_message("/dreamwire/prompt_blend", blend))
    flood_code = (  # another process, as a real flooder is: it must not share this process's GIL
        "import socket, sys, time, threading\n"
        "from pythonosc import slip\n"
        "packet = bytes.fromhex(sys.argv[1]); udp, tcp = int(sys.argv[2]), int(sys.argv[3]); sent = [0]\n"
        "end = time.perf_counter() + 6.0\n"
        "def flood_udp():\n"
        "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
        "        while time.perf_counter() < end:\n"
        "            s.sendto(packet, ('127.0.0.1', udp)); sent[0] += 1; time.sleep(0.0005)\n"
        "def flood_tcp():\n"
        "    with socket.create_connection(('127.0.0.1', tcp)) as s:\n"
        "        while time.perf_counter() < end:\n"
        "            s.sendall(slip.encode(packet)); sent[0] += 1\n"
        "ts = [threading.Thread(target=flood_udp), threading.Thread(target=flood_tcp)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]; print(sent[0])\n")
    try:
        deadline = time.perf_counter() + 120
        while len(sink.times) < 5:
            assert time.perf_counter() < deadline and not loop.finished.is_set()
            time.sleep(0.1)
        calm = time.perf_counter()
        time.sleep(3.0)
        before = [b - a for a, b in zip(sink.times, sink.times[1:]) if a >= calm]
        start = time.perf_counter()
        flooder = subprocess.run([sys.executable, "-c", flood_code, packet.hex(), str(osc.port), str(osc.tcp_port)],
                                 capture_output=True, text=True, timeout=60, check=True)
        sent = int(flooder.stdout)
        during = [b - a for a, b in zip(sink.times, sink.times[1:]) if a >= start and b <= start + 6.0]
        print(f"\n[33] {len(packet)}-byte bundles: {sent} sent in 6 s; frame gap max {max(during):.3f} s "
              f"(p50 {statistics.median(during):.3f} s, {len(during)} frames) vs {max(before):.3f} s "
              f"(p50 {statistics.median(before):.3f} s) before the flood")
        assert during and state.params.prompt == text
    finally:
        loop.stop()
        osc.close()
