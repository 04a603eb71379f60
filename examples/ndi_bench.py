"""NDI loopback round trip through dreamwire's bridges: frames/s and added latency.

    python examples/ndi_bench.py --netns            # Linux: each run in a private network namespace
    python examples/ndi_bench.py --size 512x512 --frames 300   # a host with no other NDI senders

The driver's sender must own data port 5961 and the echo's 5962, hence
``--netns`` (root or user namespaces) or a machine with no other NDI senders.

A driver process sends BGRA frames with a plain ndi-python sender. An echo
process receives them and sends them straight back, once with plain
ndi-python (the baseline: what NDI itself costs) and once through dreamwire's
``NDISource`` -> ``NDISink`` (what the runtime's loop does around the model).
The driver matches echoes by NDI timecode. "Added latency" is dreamwire's
round trip minus the baseline's. Two measurements per echo:

* lockstep: send one frame, wait for its echo (latency, no queueing);
* flood: send as fast as possible, count echoes (throughput; older frames may
  be dropped by the source's newest-frame policy, as in the live loop).

Not a test: numbers depend on the machine (2 shared cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IN_NAME, ECHO_NAME = "dw-bench-in", "dw-bench-echo"


def echo_raw(seconds: float) -> None:
    """Baseline echo: ndi-python receive -> send, nothing else."""
    import NDIlib as ndi

    ndi.initialize()
    recv = ndi.recv_create_v3(ndi.RecvCreateV3(color_format=ndi.RECV_COLOR_FORMAT_BGRX_BGRA))
    source = ndi.Source(None, "127.0.0.1:5961")
    send = ndi.send_create(ndi.SendCreate(ECHO_NAME, clock_video=False, clock_audio=False))
    out = ndi.VideoFrameV2()
    out.FourCC = ndi.FOURCC_VIDEO_TYPE_BGRA
    print("ready", flush=True)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if ndi.recv_get_no_connections(recv) == 0:
            ndi.recv_connect(recv, source)
        kind, video, _, _ = ndi.recv_capture_v2(recv, 100, want_audio=False, want_metadata=False)
        if kind != ndi.FRAME_TYPE_VIDEO:
            continue
        pixels, timecode = video.data, video.timecode
        ndi.recv_free_video_v2(recv, video)
        out.data = pixels
        out.timecode = timecode
        ndi.send_send_video_v2(send, out)


def echo_dreamwire(seconds: float) -> None:
    """The runtime's path minus the model: NDISource.read -> NDISink.write."""
    from dreamwire.bridges.ndi import NDISink, NDISource

    with NDISource("@127.0.0.1:5961") as source, NDISink(ECHO_NAME) as sink:
        print("ready", flush=True)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            frame = source.read(0.1)
            if frame is not None:
                sink.write(frame)


class Driver:
    """Plain sender (data port 5961: created before the echo) and a receiver of the echo."""

    def __init__(self, ndi: Any, height: int, width: int) -> None:
        self.ndi = ndi
        self.send = ndi.send_create(ndi.SendCreate(IN_NAME, clock_video=False, clock_audio=False))
        self.recv = ndi.recv_create_v3(ndi.RecvCreateV3(color_format=ndi.RECV_COLOR_FORMAT_BGRX_BGRA))
        self.echo = ndi.Source(None, "127.0.0.1:5962")
        self.frame = ndi.VideoFrameV2()
        self.frame.FourCC = ndi.FOURCC_VIDEO_TYPE_BGRA
        y, x = np.mgrid[0:height, 0:width]
        self.image = np.dstack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height),
                                np.full_like(x, 255)]).astype(np.uint8)

    def put(self, timecode: int) -> None:
        self.frame.data = self.image
        self.frame.timecode = timecode
        self.ndi.send_send_video_v2(self.send, self.frame)

    def get(self, wait_ms: int) -> int | None:
        ndi = self.ndi
        if ndi.recv_get_no_connections(self.recv) == 0:
            ndi.recv_connect(self.recv, self.echo)
        kind, video, _, _ = ndi.recv_capture_v2(self.recv, wait_ms, want_audio=False, want_metadata=False)
        if kind != ndi.FRAME_TYPE_VIDEO:
            return None
        timecode = int(video.timecode)
        ndi.recv_free_video_v2(self.recv, video)
        return timecode

    def warm_up(self, seconds: float = 10.0) -> bool:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            self.put(1)
            if self.get(50) is not None:
                while self.get(50) is not None:
                    pass
                return True
        return False

    def lockstep(self, frames: int) -> dict:
        rtts, lost = [], 0
        started = time.perf_counter()
        for i in range(frames):
            timecode = 10_000 + i
            sent = time.perf_counter()
            self.put(timecode)
            while True:
                got = self.get(1000)
                if got == timecode:
                    rtts.append((time.perf_counter() - sent) * 1000)
                    break
                if got is None:
                    lost += 1
                    break
        took = time.perf_counter() - started
        return {"frames": frames, "lost": lost, "fps": round(len(rtts) / took, 1), **summary(rtts)}

    def flood(self, frames: int) -> dict:
        sent_at: dict[int, float] = {}
        rtts: list[float] = []
        started = time.perf_counter()
        for i in range(frames):
            timecode = 100_000 + i
            sent_at[timecode] = time.perf_counter()
            self.put(timecode)
            while (got := self.get(0)) is not None:
                rtts.append((time.perf_counter() - sent_at[got]) * 1000)
        send_done = time.perf_counter()
        while (got := self.get(300)) is not None:
            rtts.append((time.perf_counter() - sent_at[got]) * 1000)
        took = time.perf_counter() - started
        return {"frames": frames, "sent_fps": round(frames / (send_done - started), 1), "echoed": len(rtts),
                "echo_fps": round(len(rtts) / took, 1), **summary(rtts)}

    def close(self) -> None:
        self.ndi.recv_destroy(self.recv)
        self.ndi.send_destroy(self.send)


def summary(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "mean_ms": None}
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "mean_ms": round(statistics.fmean(ordered), 2)}


def run(kind: str, args: argparse.Namespace) -> dict:
    import NDIlib as ndi

    height, width = (int(v) for v in args.size.split("x"))
    ndi.initialize()
    driver = Driver(ndi, height, width)  # first sender in the namespace: data port 5961
    echo = subprocess.Popen([sys.executable, __file__, "--echo", kind, "--seconds", "60"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        if echo.stdout is None or echo.stdout.readline().strip() != "ready":
            raise SystemExit(f"{kind} echo did not start")
        if not driver.warm_up():
            raise SystemExit(f"{kind} echo never answered (is this run in its own namespace? use --netns)")
        return {"lockstep": driver.lockstep(args.frames), "flood": driver.flood(args.frames)}
    finally:
        echo.terminate()
        echo.wait()
        driver.close()
        ndi.destroy()


def measure(kind: str, args: argparse.Namespace) -> dict:
    """One echo kind, in a fresh network namespace with --netns so data ports are 5961/5962."""
    command = [sys.executable, __file__, "--only", kind, "--size", args.size, "--frames", str(args.frames)]
    if args.netns:
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *command]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=90)
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x512", help="HEIGHTxWIDTH")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--netns", action="store_true", help="re-run inside `unshare -n` with only lo up")
    parser.add_argument("--only", choices=("raw", "dreamwire"), help="run one echo kind and print its JSON")
    parser.add_argument("--echo", choices=("raw", "dreamwire"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        (echo_raw if args.echo == "raw" else echo_dreamwire)(args.seconds)
        return 0
    if args.only:
        print(json.dumps(run(args.only, args)), flush=True)
        return 0
    results = {kind: measure(kind, args) for kind in ("raw", "dreamwire")}
    added = {mode: round(results["dreamwire"][mode]["p50_ms"] - results["raw"][mode]["p50_ms"], 2)
             for mode in ("lockstep", "flood") if results["raw"][mode]["p50_ms"] is not None
             and results["dreamwire"][mode]["p50_ms"] is not None}
    print(json.dumps({"size": args.size, "frames": args.frames, **results, "added_p50_ms": added}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
