"""Real-NDI test scenarios, run as ``python tests/fakes/ndi_peers.py SCENARIO`` in a subprocess.

Why subprocesses: test_ndi.py starts each scenario inside its own network
namespace (``unshare -n`` + ``ip link set lo up``), which isolates NDI's ports
(every NDI process binds TCP 5960) and guarantees nothing leaves the host. A
scenario prints one JSON line with what it observed; the test asserts on it.

NDI video is lossy, so pictures are never compared byte for byte: each test
frame is a smooth gradient (compared by PSNR) carrying a 16-bit frame id in
big flat blocks along its top edge (decoded exactly).

Scenarios:

* ``sender``   - a plain ndi-python sender (the "TouchDesigner" of the tests;
  ``--dreamwire``: the same pictures through dreamwire's NDISink); prints
  ``{"ready": t}`` (``time.perf_counter()``) after its first frame.
* ``source``   - dreamwire NDISource fed by a ``sender`` child: discovery,
  ``list_senders``, connect by name and by address, a resolution change.
* ``sink``     - dreamwire NDISink read by a plain ndi-python receiver in the
  same process: all four input layouts, timecode pass-through, odd sizes.
* ``reconnect`` - source opened before its sender exists, sender killed (or
  stopped) and restarted; measures how soon the new frames come through.
* ``loop-reconnect`` - the same at the runtime level: a ``FrameLoop`` runs the
  tiny engine between an NDISource and a recording live sink while the sender
  is killed and a new one starts; records every output the sink got.
* ``listing`` - two plain senders and a dreamwire-sink sender, three processes,
  and ``python -m dreamwire sources`` run ``--calls`` times: what each listed.
* ``restarts`` - one sender restarted ``--restarts`` times, read by name from a
  process that also runs dreamwire's NDISink, another sender up: how soon each
  restart's frames come through.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this file is tests/fakes/ndi_peers.py
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BITS = 16


# --- test pictures --------------------------------------------------------------------------
def make_image(frame_id: int, height: int, width: int) -> np.ndarray:
    """BGRA gradient with ``frame_id`` in 16 flat black/white blocks across the top."""
    y = np.linspace(40, 215, height, dtype=np.float32)[:, None]
    x = np.linspace(40, 215, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 4), np.uint8)
    image[..., 0] = x
    image[..., 1] = y
    image[..., 2] = (x + y) / 2
    image[..., 3] = 255
    block = width // BITS
    for bit in range(BITS):
        image[:block, bit * block:(bit + 1) * block, :3] = 255 if frame_id >> bit & 1 else 0
    return image


def decode_id(bgra: np.ndarray) -> int:
    block = bgra.shape[1] // BITS
    margin = block // 4
    value = 0
    for bit in range(BITS):
        patch = bgra[margin:block - margin, bit * block + margin:(bit + 1) * block - margin, :3]
        if patch.mean() > 127:
            value |= 1 << bit
    return value


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    diff = a[..., :3].astype(np.float32) - b[..., :3].astype(np.float32)
    mse = float(np.mean(diff * diff))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def as_bgra(pixels: np.ndarray, layout: str) -> np.ndarray:
    order = {"BGRA": [0, 1, 2, 3], "RGBA": [2, 1, 0, 3]}[layout]
    return pixels[..., order]


def convert(bgra: np.ndarray, layout: str) -> np.ndarray:
    """BGRA test image -> the given layout, as a real producer would hand it over."""
    index = {"BGRA": [0, 1, 2, 3], "RGBA": [2, 1, 0, 3], "BGR": [0, 1, 2], "RGB": [2, 1, 0]}[layout]
    return np.ascontiguousarray(bgra[..., index])


def check_frame(pixels_bgra: np.ndarray) -> tuple[int, float]:
    """(decoded id, PSNR against the picture that id should be)."""
    frame_id = decode_id(pixels_bgra)
    height, width = pixels_bgra.shape[:2]
    return frame_id, psnr(pixels_bgra, make_image(frame_id, height, width))


def timecode_for(frame_id: int) -> int:
    return frame_id * 1000 + 7


# --- plain ndi-python sender (child process) --------------------------------------------------
def run_sender(args: argparse.Namespace) -> dict:
    import NDIlib as ndi

    if args.dreamwire:
        return run_dreamwire_sink(args)
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    if not ndi.initialize():
        raise SystemExit("NDIlib.initialize failed")
    sender = ndi.send_create(ndi.SendCreate(args.name, clock_video=True, clock_audio=False))
    video = ndi.VideoFrameV2()
    video.FourCC = ndi.FOURCC_VIDEO_TYPE_BGRA
    video.frame_rate_N, video.frame_rate_D = args.fps, 1
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    frame_id, sent = args.start, 0
    deadline = time.perf_counter() + args.seconds
    while not stop and time.perf_counter() < deadline:
        height, width = sizes[min(sent // args.switch_after, len(sizes) - 1)] if args.switch_after else sizes[0]
        image = make_image(frame_id, height, width)
        video.data = image
        video.timecode = timecode_for(frame_id)
        ndi.send_send_video_v2(sender, video)  # clock_video paces this to args.fps
        if sent == 0:
            print(json.dumps({"ready": time.perf_counter()}), flush=True)
        frame_id, sent = frame_id + 1, sent + 1
    ndi.send_destroy(sender)  # a SIGKILLed sender never gets here: that is the crash case
    ndi.destroy()
    return {"sent": sent, "stopped": stop}


def run_dreamwire_sink(args: argparse.Namespace) -> dict:
    """The same pictures through dreamwire's own NDISink (as ``dreamwire run --sink ndi:NAME`` sends)."""
    from dreamwire.bridges.base import Frame
    from dreamwire.bridges.ndi import NDISink

    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    height, width = (int(v) for v in args.sizes.split(",")[0].split("x"))
    frame_id, sent = args.start, 0
    deadline = time.perf_counter() + args.seconds
    with NDISink(args.name, fps=args.fps) as sink:
        while not stop and time.perf_counter() < deadline:
            sink.write(Frame(pixels=make_image(frame_id, height, width), layout="BGRA", frame_id=frame_id,
                             capture_time=time.perf_counter(), timecode=timecode_for(frame_id)))
            if sent == 0:
                print(json.dumps({"ready": time.perf_counter()}), flush=True)
            frame_id, sent = frame_id + 1, sent + 1
            time.sleep(1 / args.fps)
    return {"sent": sent, "stopped": stop}


class Sender:
    """A ``sender`` child process, started and stopped by the scenario (``dreamwire``: via NDISink)."""

    def __init__(self, name: str, start: int = 0, fps: int = 60, seconds: float = 10.0,
                 sizes: str = "256x256", switch_after: int = 0, dreamwire: bool = False) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "sender", "--name", name, "--start", str(start),
               "--fps", str(fps), "--seconds", str(seconds), "--sizes", sizes,
               "--switch-after", str(switch_after), *(["--dreamwire"] if dreamwire else [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"test sender exited early (rc={self.proc.wait()})")
        self.ready = float(json.loads(line)["ready"])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- scenarios -----------------------------------------------------------------------------
def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}"


def collect(source: Any, seconds: float, until: Callable[[list[dict]], bool] | None = None) -> list[dict]:
    """Read ``source`` for up to ``seconds``; one dict per frame (id, psnr, size, timecode, ...)."""
    frames: list[dict] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        frame = source.read(min(0.1, max(0.0, deadline - time.perf_counter())))
        if frame is None:
            continue
        frame_id, quality = check_frame(as_bgra(frame.pixels, frame.layout))
        frames.append({"id": frame_id, "psnr": round(quality, 2), "size": list(frame.size), "layout": frame.layout,
                       "timecode": frame.timecode, "frame_id": frame.frame_id, "t": frame.capture_time,
                       "dtype": str(frame.pixels.dtype), "meta_rate": list(frame.frame_rate or [])})
        if until and until(frames):
            break
    return frames


def resolve_url(name: str, seconds: float = 3.0) -> str:
    """Data address of ``name``, found by loopback discovery (so it also works outside a namespace)."""
    from dreamwire.bridges import _ndifind, _ndilib

    lib = _ndilib.load()
    _ndilib.acquire(lib)
    finder = _ndifind.make_finder(lib, [_ndifind.LOOPBACK])
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            lib.find_wait_for_sources(finder, 100)
            for full, url in _ndifind.sources(lib, finder):
                if _ndilib.stream_name(full) == name:
                    return url
        raise RuntimeError(f"{name!r} not discovered")
    finally:
        lib.find_destroy(finder)
        _ndilib.release(lib)


def scenario_source(_: argparse.Namespace) -> dict:
    from dreamwire.bridges.ndi import NDISource, list_senders

    name = unique("dw-src")
    sender = Sender(name, fps=60, seconds=8, sizes="256x256,192x320", switch_after=120)
    try:
        listed = list_senders(timeout=0.5)
        with NDISource(name) as source:
            by_name = collect(source, 5.0, until=lambda fs: len({tuple(f["size"]) for f in fs}) > 1 and len(fs) > 20)
        url = resolve_url(name)
        with NDISource(f"@{url}") as source:
            by_address = collect(source, 2.0, until=lambda fs: len(fs) >= 10)
    finally:
        sender.stop()
    return {"name": name, "listed": listed, "by_name": by_name, "by_address": by_address, "url": url}


def scenario_sink(_: argparse.Namespace) -> dict:
    import NDIlib as ndi

    from dreamwire.bridges.base import Frame
    from dreamwire.bridges.ndi import NDISink

    name = unique("dw-sink")
    results: list[dict] = []
    with NDISink(name, fps=30) as sink:
        receiver = _Receiver(ndi, name)
        try:
            # The source's frame rate (NDI in: N/D as received) must reach the NDI frame; a frame without
            # one, or with a nonsense one, goes out at the sink's fps (30 here).
            plan = [(layout, 256, 256, None) for layout in ("BGRA", "RGBA", "BGR", "RGB")] + [
                ("RGB", 129, 255, None), ("BGRA", 64, 64, (30000, 1001)), ("RGB", 64, 64, (60, 1)),
                ("BGRA", 64, 64, (25, 1)), ("BGRA", 64, 64, (0, 1))]
            for step, (layout, height, width, rate) in enumerate(plan):
                frame_id = 100 + step
                image = make_image(frame_id, height, width)
                frame = Frame(pixels=convert(image, layout), layout=layout, frame_id=frame_id,
                              capture_time=time.perf_counter(), timecode=timecode_for(frame_id), frame_rate=rate)
                got = receiver.round_trip(lambda frame=frame: sink.write(frame), frame_id, (height, width))
                results.append({"layout": layout, "sent_size": [height, width], "sent_rate": rate, **got})
            connections = sink.connections
        finally:
            receiver.close()
    return {"name": name, "results": results, "connections": connections}


class _Receiver:
    """Plain ndi-python receiver that finds ``name`` on loopback and re-connects until it is connected."""

    def __init__(self, ndi: Any, name: str) -> None:
        self.ndi, self.name = ndi, name
        ndi.initialize()
        settings = ndi.FindCreate()
        settings.extra_ips = "127.0.0.1"
        self.finder = ndi.find_create_v2(settings)
        self.recv = ndi.recv_create_v3(ndi.RecvCreateV3(color_format=ndi.RECV_COLOR_FORMAT_BGRX_BGRA))
        self.source: Any = None

    def _connect(self) -> None:
        ndi = self.ndi
        if ndi.recv_get_no_connections(self.recv) > 0:
            return
        for src in ndi.find_get_current_sources(self.finder):
            if src.ndi_name.endswith(f"({self.name})"):
                self.source = ndi.Source(src.ndi_name, src.url_address)
                ndi.recv_connect(self.recv, self.source)

    def round_trip(self, send: Callable[[], None], want: int, want_size: tuple[int, int],
                   seconds: float = 5.0) -> dict:
        """Send until the frame with id ``want`` comes back (frames sent before connecting are lost).

        Content is compared on the ``want_size`` corner: odd sizes arrive padded by one pixel.
        """
        ndi = self.ndi
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            self._connect()
            send()
            kind, video, _, _ = ndi.recv_capture_v2(self.recv, 100)
            if kind != ndi.FRAME_TYPE_VIDEO:
                continue
            pixels, fourcc, timecode = video.data, video.FourCC.name, int(video.timecode)
            rate = [int(video.frame_rate_N), int(video.frame_rate_D)]
            ndi.recv_free_video_v2(self.recv, video)
            height, width = want_size
            frame_id, quality = check_frame(np.ascontiguousarray(pixels[:height, :width]))
            if frame_id == want:
                return {"id": frame_id, "psnr": round(quality, 2), "size": list(pixels.shape[:2]),
                        "fourcc": fourcc, "timecode": timecode, "rate": rate}
        return {"id": None}

    def close(self) -> None:
        self.ndi.recv_destroy(self.recv)
        self.ndi.find_destroy(self.finder)


def scenario_reconnect(args: argparse.Namespace) -> dict:
    from dreamwire.bridges.ndi import NDISource

    name = unique("dw-re")
    target = name if args.by == "name" else "@127.0.0.1:5961"
    with NDISource(target) as source:
        before = collect(source, 0.5)  # no sender yet: must be quiet, not raise
        first = Sender(name, start=0, seconds=20)
        if args.by == "address" and resolve_url(name) != "127.0.0.1:5961":
            raise RuntimeError("address scenario needs its own namespace (sender is not on port 5961)")
        connect = collect(source, 4.0, until=lambda fs: len(fs) >= 30)
        if args.stop == "kill":
            first.kill()
        else:
            first.stop()
        gone_at = time.perf_counter()
        gap, gap_reads = [], []
        while time.perf_counter() - gone_at < 1.5:  # the loop keeps calling read(); it must return on time
            started = time.perf_counter()
            frame = source.read(0.05)
            gap_reads.append(time.perf_counter() - started)
            if frame is not None:
                gap.append({"id": check_frame(as_bgra(frame.pixels, frame.layout))[0], "t": frame.capture_time})
        second = Sender(name, start=5000, seconds=20)
        resumed = collect(source, 4.0, until=lambda fs: sum(f["id"] >= 5000 for f in fs) >= 20)
        second.stop()
    return {"name": name, "by": args.by, "before": before, "first_ready": first.ready, "connect": connect,
            "gone_at": gone_at, "gap": gap,
            "gap_reads": len(gap_reads), "gap_read_max_s": max(gap_reads), "second_ready": second.ready,
            "resumed": resumed}


class LiveRecordingSink:
    """A live sink (like NDISink: the loop repeats its last output while the source is silent) that
    records what each output was made of (not its pixels); the loop's ``on_sent`` feeds it."""

    live = True

    def __init__(self) -> None:
        self.outputs: list[dict] = []

    def open(self) -> None:
        pass

    def write(self, frame: Any) -> None:
        pass

    def observe(self, out: Any) -> None:
        frame = out.frame
        self.outputs.append({"t": time.perf_counter(), "frame_id": frame.frame_id, "source_id": frame.source_id,
                             "timecode": frame.timecode, "capture_t": frame.capture_time, "held": out.held,
                             "ndi_source": frame.sender, "size": list(frame.size), "layout": frame.layout})

    def close(self) -> None:
        pass

    def since(self, t: float, held: bool | None = None) -> list[dict]:
        outs = list(self.outputs)  # the send thread appends while we look
        return [o for o in outs if o["t"] >= t and (held is None or o["held"] == held)]


def wait_for(cond: Callable[[], bool], seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while not cond():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.02)
    return True


def scenario_loop_reconnect(_: argparse.Namespace) -> dict:
    """Runtime-level reconnect: the live loop keeps sending (held) through a sender restart, then resumes.

    The engine is the real tiny one (64x64, CPU). Its pictures cannot carry frame ids, but each output
    keeps its input's NDI timecode, and the test sender stamps ``timecode_for(id)``: sender 1 counts
    from 0, sender 2 from 5000.
    """
    import torch

    from dreamwire.backends.assemble import build_engine
    from dreamwire.bridges.ndi import NDISource
    from dreamwire.engine.api import EngineConfig
    from dreamwire.live.loop import FrameLoop
    from dreamwire.live.options import LoopOptions
    from dreamwire.live.state import ParamState

    torch.set_num_threads(1)  # two shared cores: leave room for the NDI decoder and the senders
    started = time.perf_counter()
    engine = build_engine("tiny", backend="torch", device="cpu", config=EngineConfig(width=64, height=64))
    engine_s = time.perf_counter() - started
    name = unique("dw-loop")
    source = NDISource(name)  # found by name: discovery asks 127.0.0.1 first
    source.open()
    sink = LiveRecordingSink()
    loop = FrameLoop(engine, source, sink, ParamState(), LoopOptions(hold_repeat=0.25),
                     on_sent=sink.observe).start()
    first = second = None
    try:
        first = Sender(name, start=0, fps=30, seconds=30)
        connected = wait_for(lambda: len(sink.since(first.ready, held=False)) >= 20, 8.0)
        first.kill()  # a crash: no goodbye from the sender
        gone_at = time.perf_counter()
        time.sleep(1.5)
        alive_in_gap = not loop.finished.is_set()
        second = Sender(name, start=5000, fps=30, seconds=30)
        resumed = wait_for(lambda: sum(o["timecode"] >= timecode_for(5000)
                                       for o in sink.since(second.ready, held=False)) >= 20, 6.0)
    finally:
        for sender in (first, second):
            if sender is not None and sender.proc.poll() is None:
                sender.stop()
        loop.stop()
    stats = loop.stats
    return {"name": name, "engine_build_s": round(engine_s, 2), "connected": connected, "resumed": resumed,
            "first_ready": first.ready, "gone_at": gone_at, "second_ready": second.ready,
            "alive_in_gap": alive_in_gap, "outputs": sink.outputs,
            "stats": {"frames_in": stats.frames_in, "frames_out": stats.frames_out, "held": stats.held,
                      "errors": stats.errors, "steps": stats.steps}}


def scenario_listing(args: argparse.Namespace) -> dict:
    """``dreamwire sources`` (the CLI, its own process) with two plain senders and dreamwire's NDI sink up.

    Every NDI process listens on TCP 5960, so a query to one address reaches one process: this is the
    case that needs more than one query per host.
    """
    names = [unique("dw-list-a"), unique("dw-list-b"), unique("dw-list-own")]
    senders = [Sender(names[0], fps=30, seconds=300), Sender(names[1], fps=30, seconds=300),
               Sender(names[2], fps=30, seconds=300, dreamwire=True)]
    calls = []
    try:
        for _ in range(args.calls):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "dreamwire", "sources"], capture_output=True, text=True,
                                 timeout=60)
            listed = [line[len("ndi:"):] for line in out.stdout.splitlines() if line.startswith("ndi:")]
            calls.append({"rc": out.returncode, "listed": listed, "seconds": round(time.perf_counter() - started, 2),
                          "stderr": out.stderr[-800:]})
    finally:
        for sender in senders:
            sender.stop()
    return {"names": names, "calls": calls}


def scenario_restarts(args: argparse.Namespace) -> dict:
    """A sender restarted ``--restarts`` times, read by name by an NDISource in a process that also sends
    through dreamwire's NDISink (``dreamwire run --source ndi:X --sink ndi:Y``), with a bystander sender up.

    Restart k sends ids from 1000 * (k + 1); the bystander 40000+, the own sink 50000+. Gaps between a
    stop and the next start cycle through GAPS (the longest outlasts a finder's reconnect attempts).
    """
    from dreamwire.bridges.base import Frame
    from dreamwire.bridges.ndi import NDISink, NDISource

    name, bystander_name, own = unique("dw-rs"), unique("dw-rs-other"), unique("dw-rs-own")
    done = threading.Event()
    results: list[dict] = []
    with NDISink(own, fps=30) as sink:
        def send_own() -> None:
            frame_id = 50000
            while not done.is_set():
                sink.write(Frame(pixels=make_image(frame_id, 64, 64), layout="BGRA", frame_id=frame_id,
                                 capture_time=time.perf_counter()))
                frame_id += 1
                done.wait(1 / 30)

        own_thread = threading.Thread(target=send_own, daemon=True)
        own_thread.start()
        bystander = Sender(bystander_name, start=40000, fps=30, seconds=600)
        try:
            with NDISource(name) as source:
                for k in range(args.restarts):
                    first = 1000 * (k + 1)
                    sender = Sender(name, start=first, fps=30, seconds=120)
                    frames = collect(source, 5.0, until=lambda fs, first=first: any(f["id"] >= first for f in fs))
                    fresh = [f for f in frames if first <= f["id"] < first + 1000]
                    wrong = [f["id"] for f in frames if not first - 1000 <= f["id"] < first + 1000]
                    results.append({"restart": k, "gap_before_s": GAPS[(k - 1) % len(GAPS)] if k else None,
                                    "reconnect_s": round(fresh[0]["t"] - sender.ready, 3) if fresh else None,
                                    "wrong_ids": wrong[:5]})
                    if k % 2 == 0:
                        sender.kill()  # a crash: no goodbye
                    else:
                        sender.stop()
                    time.sleep(GAPS[k % len(GAPS)])
        finally:
            done.set()
            own_thread.join()
            bystander.stop()
    return {"name": name, "restarts": results}


GAPS = (0.2, 0.6, 1.2, 3.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    send = sub.add_parser("sender")
    send.add_argument("--name", required=True)
    send.add_argument("--start", type=int, default=0)
    send.add_argument("--fps", type=int, default=60)
    send.add_argument("--seconds", type=float, default=10.0)
    send.add_argument("--sizes", default="256x256")
    send.add_argument("--switch-after", type=int, default=0)
    send.add_argument("--dreamwire", action="store_true", help="send through dreamwire's NDISink")
    sub.add_parser("source")
    sub.add_parser("sink")
    re_parser = sub.add_parser("reconnect")
    re_parser.add_argument("--by", choices=("name", "address"), default="name")
    re_parser.add_argument("--stop", choices=("kill", "stop"), default="kill")
    sub.add_parser("loop-reconnect")
    sub.add_parser("listing").add_argument("--calls", type=int, default=10)
    sub.add_parser("restarts").add_argument("--restarts", type=int, default=20)
    args = parser.parse_args(argv)
    scenarios = {"sender": run_sender, "source": scenario_source, "sink": scenario_sink,
                 "reconnect": scenario_reconnect, "loop-reconnect": scenario_loop_reconnect,
                 "listing": scenario_listing, "restarts": scenario_restarts}
    result = scenarios[args.scenario](args)
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
