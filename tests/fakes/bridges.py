"""Sources and sinks for tests: lists in, recordings out, on the Source/Sink protocol."""

from __future__ import annotations

import queue
import threading
import time

from dreamwire.bridges.base import Frame
from dreamwire.bridges.pattern import PatternSource
from dreamwire.live.outputs import Output


class ListSource:
    """Hands out prepared frames once each, then nothing; on demand, so none is dropped on the way in."""

    on_demand = True

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = list(frames)
        self.closed = False

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        if not self.frames:
            time.sleep(timeout)
            return None
        time.sleep(0.002)
        return self.frames.pop(0)

    def close(self) -> None:
        self.closed = True


class RecordingSink:
    """Records every frame written; ``observe`` (the loop's ``on_sent``) records what made each one."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.frames: list[Frame] = []
        self.outputs: list[Output] = []
        self.sleep = sleep
        self.closed = False
        self.got = threading.Event()

    def open(self) -> None:
        pass

    def write(self, frame: Frame) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        self.frames.append(frame)
        self.got.set()

    def observe(self, out: Output) -> None:
        self.outputs.append(out)

    def close(self) -> None:
        self.closed = True


class FlakySource(PatternSource):
    def read(self, timeout: float) -> Frame | None:
        if self._index % 4 == 3:
            self._index += 1
            raise OSError("simulated receive failure")
        return super().read(timeout)


class LiveSink(RecordingSink):
    live = True


class QueueSource:
    """A live source: frames arrive when the test puts them."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.closed = False

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True


class OnDemand(QueueSource):
    on_demand = True


class Recorder:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.outputs: list = []
        self.reports: list[str] = []
        self.lock = threading.Lock()

    def open(self) -> None:
        pass

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass

    def observe(self, out) -> None:
        self.outputs.append(out)

    def report(self, reason: str) -> None:
        with self.lock:
            self.reports.append(reason)
