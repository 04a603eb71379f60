"""A real `dreamwire run` under test, as a user starts it: a subprocess on free OSC ports, its log, an OSC client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dreamwire.osc.wire import build_message, parse_packet


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        try:
            t.bind(("127.0.0.1", port))  # TCP on the same number too, so the run serves both
        except OSError:
            return free_port()
        return port


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen:
    log = open(tmp_path / "run.log", "w")  # a file, not a pipe: a chatty run can never block on it
    return subprocess.Popen([sys.executable, "-m", "dreamwire", "run", *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run_log(tmp_path: Path) -> str:
    return (tmp_path / "run.log").read_text()


class Client:
    """An OSC client with its own socket, so status replies come back to it."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)

    def send(self, address: str, *args) -> None:
        self.sock.sendto(build_message(address, list(args)), self.target)

    def status(self, timeout: float) -> dict[str, list]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.send("/dreamwire/status")
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            return {m.address: m.args for m in parse_packet(data)}
        raise AssertionError(f"no /dreamwire/status reply within {timeout} s")

    def close(self) -> None:
        self.sock.close()


def stop_run(proc: subprocess.Popen, tmp_path: Path, sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"did not exit within 10 s of {signal.Signals(sig).name}:\n" + run_log(tmp_path)) from None
    assert rc == 0, run_log(tmp_path)
