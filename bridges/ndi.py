"""NDI in and out (Linux, Windows, macOS) through ndi-python.

``ndi:NAME`` receives from a source, ``--sink ndi:NAME`` publishes one; see
:class:`dreamwire.bridges._ndilib.Target` for the address forms. Why these choices:

* ndi-python, not cyndilib: it exposes ``extra_ips``, source URLs and
  ``recv_connect``, which discovery without mDNS and reconnecting need;
  cyndilib hides them (see docs/bridges.md).
* The receiver asks the SDK for BGRA/RGBA (``RECV_COLOR_FORMAT_BGRX_BGRA``),
  so UYVY never reaches Python; the SDK converts on its own threads.
* No background thread: each :meth:`NDISource.read` checks the connection;
  while it is down it looks the name up (:class:`dreamwire.bridges._ndifind.Finder`:
  a lasting finder for mDNS, plus a fresh probe every ``refind_interval`` that
  asks every local NDI process) and calls ``recv_connect`` as soon as the
  source is listed, again every ``retry_interval`` (a receiver whose sender
  appeared later never connects by itself). A lost sender costs ``None``
  reads, never an exception; the loop holds its output.
* ``read`` returns the newest frame and drops older queued ones (``latest``).
"""

from __future__ import annotations

import logging
import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from dreamwire.bridges import _ndilib
from dreamwire.bridges._common import Every, FourChannelPacker, OpenClose, check_layout, host_pixels
from dreamwire.bridges._ndifind import Finder, describe, list_senders
from dreamwire.bridges._ndilib import Target
from dreamwire.bridges.base import BridgeError, Frame
from dreamwire.logs import StateLog

__all__ = ["NDISink", "NDISource", "list_senders"]

log = logging.getLogger(__name__)

_COLOR_FORMATS = {"BGRA": "RECV_COLOR_FORMAT_BGRX_BGRA", "RGBA": "RECV_COLOR_FORMAT_RGBX_RGBA"}
_BANDWIDTHS = {"highest": "RECV_BANDWIDTH_HIGHEST", "lowest": "RECV_BANDWIDTH_LOWEST"}
# FourCC name -> (layout, carries alpha)
_RECEIVED = {
    "FOURCC_VIDEO_TYPE_BGRA": ("BGRA", True),
    "FOURCC_VIDEO_TYPE_BGRX": ("BGRA", False),
    "FOURCC_VIDEO_TYPE_RGBA": ("RGBA", True),
    "FOURCC_VIDEO_TYPE_RGBX": ("RGBA", False),
}
_SENT = {("BGRA", True): "FOURCC_VIDEO_TYPE_BGRA", ("BGRA", False): "FOURCC_VIDEO_TYPE_BGRX",
         ("RGBA", True): "FOURCC_VIDEO_TYPE_RGBA", ("RGBA", False): "FOURCC_VIDEO_TYPE_RGBX"}
_MAX_DRAIN = 64


class NDISource(OpenClose):
    """Receives an NDI stream as BGRA (default) or RGBA frames; reconnects by itself."""

    def __init__(self, rest: str = "", *, extra_ips: str | list[str] | None = None, layout: str = "BGRA",
                 bandwidth: str = "highest", latest: bool = True, receiver_name: str = "dreamwire",
                 retry_interval: float = 0.25, refind_interval: float = 0.5) -> None:
        self.target = Target.parse(rest)
        self.layout = check_layout(layout)
        if self.layout not in _COLOR_FORMATS:
            raise BridgeError(f"NDI can deliver BGRA or RGBA, not {layout!r}")
        if bandwidth not in _BANDWIDTHS:
            raise BridgeError(f"NDI bandwidth must be one of {sorted(_BANDWIDTHS)}, not {bandwidth!r}")
        self._lib = _ndilib.load()
        self._extra_ips = extra_ips
        self._bandwidth = bandwidth
        self._latest = latest
        self._receiver_name = receiver_name
        self._retry = Every(retry_interval)
        self._refind_interval = refind_interval
        self._status = StateLog(log)  # connection: waiting / connected / lost
        self._problems = StateLog(log)  # frames we cannot use, reported once per kind
        self._recv: Any = None
        self._finder: Finder | None = None
        self._connected_to: tuple[str, str] | None = None
        self._source_ref: Any = None
        self._ever_connected = False
        self._frame_id = 0

    # lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        if self._recv is not None:
            return
        lib = self._lib
        _ndilib.acquire(lib)
        try:
            if self.target.address is None:
                self._finder = Finder(lib, self._extra_ips, self.target.hosts, self._refind_interval)
            settings = lib.RecvCreateV3()
            settings.color_format = getattr(lib, _COLOR_FORMATS[self.layout])
            settings.bandwidth = getattr(lib, _BANDWIDTHS[self._bandwidth])
            settings.allow_video_fields = False
            settings.ndi_recv_name = self._receiver_name
            self._recv = lib.recv_create_v3(settings)
            if self._recv is None:
                raise BridgeError("NDI could not create a receiver")
        except BaseException:
            self._destroy()
            raise
        self._maintain()

    def close(self) -> None:
        if self._recv is not None or self._finder is not None:
            self._destroy()

    def _destroy(self) -> None:
        lib = self._lib
        if self._recv is not None:
            lib.recv_destroy(self._recv)
        if self._finder is not None:
            self._finder.close()
        self._recv = self._finder = None
        _ndilib.release(lib)

    @property
    def connected(self) -> bool:
        return self._recv is not None and self._lib.recv_get_no_connections(self._recv) > 0

    # reading -------------------------------------------------------------------------------
    def read(self, timeout: float) -> Frame | None:
        if self._recv is None:
            raise BridgeError("NDISource.read() called before open()")
        deadline = time.perf_counter() + max(0.0, timeout)
        while True:
            self._maintain()
            # Wait in slices so a missing sender is retried on time even inside a long read.
            slice_ms = int(min(max(deadline - time.perf_counter(), 0.0), 0.1) * 1000)
            frame = self._capture(slice_ms)
            if frame is not None or time.perf_counter() >= deadline:
                return frame

    def _capture(self, wait_ms: int) -> Frame | None:
        lib, recv = self._lib, self._recv
        kind, video, _, _ = lib.recv_capture_v2(recv, wait_ms, want_audio=False, want_metadata=False)
        if kind != lib.FRAME_TYPE_VIDEO:
            return None
        for _ in range(_MAX_DRAIN if self._latest else 0):
            more, newer, _, _ = lib.recv_capture_v2(recv, 0, want_audio=False, want_metadata=False)
            if more == lib.FRAME_TYPE_NONE:
                break
            if more == lib.FRAME_TYPE_VIDEO:
                lib.recv_free_video_v2(recv, video)
                video = newer
        try:
            return self._to_frame(video)
        finally:
            lib.recv_free_video_v2(recv, video)

    def _to_frame(self, video: Any) -> Frame | None:
        layout, alpha = _RECEIVED.get(getattr(video.FourCC, "name", ""), (None, False))
        if layout is None:
            self._problems.enter("format", f"NDI: dropping frames in unexpected format {video.FourCC}", logging.ERROR)
            return None
        pixels = video.data  # ndi-python returns a copy, so freeing the SDK frame afterwards is safe
        if pixels.ndim != 3 or pixels.shape[2] != 4:
            self._problems.enter("stride", f"NDI: dropping frames with line stride {video.line_stride_in_bytes} "
                               f"for width {video.xres}", logging.ERROR)
            return None
        if not alpha:
            pixels[..., 3] = 255
        self._frame_id += 1
        return Frame(pixels=np.ascontiguousarray(pixels), layout=layout, frame_id=self._frame_id,
                     capture_time=time.perf_counter(), timecode=int(video.timecode),
                     frame_rate=(int(video.frame_rate_N), int(video.frame_rate_D)),
                     sender=self._connected_to[0] if self._connected_to is not None else None)

    # connecting ----------------------------------------------------------------------------
    def _maintain(self) -> None:
        if self.connected:
            if self._status.enter("connected", f"NDI: receiving {self._describe()}"):
                self._ever_connected = True
                if self._finder is not None:
                    self._finder.pause()
            return
        if self._ever_connected:
            self._status.enter("lost", f"NDI: lost {self._describe()}; holding the last output and "
                               "reconnecting", logging.WARNING)
        else:
            how = f"discovery asks {describe(self._finder.ips)} and mDNS" if self._finder else "no discovery"
            self._status.enter("waiting", f"NDI: waiting for {self.target.label()} ({how})")
        if self._finder is None:
            if self._retry.due():
                self._connect(self.target.name, self.target.address or "")
            return
        fresh, lasting = self._finder.found()
        hits = _ndilib.match_source(self.target.name, fresh) or _ndilib.match_source(self.target.name, lasting)
        if not hits:
            return
        if len({name for name, _ in hits}) > 1:
            self._status.enter("ambiguous", f"NDI: {self.target.name!r} matches {[h[0] for h in hits]}; "
                               f"using {hits[0][0]!r} (give the full name to choose)", logging.WARNING)
        if hits[0] != self._connected_to or self._retry.due():  # a newly listed source: connect at once
            self._connect(*hits[0])

    def _connect(self, name: str, url: str) -> None:
        self._connected_to = (name, url)
        # The binding keeps pointers into Python strings: hold the Source until the next call.
        self._source_ref = self._lib.Source(name or None, url or None)
        self._lib.recv_connect(self._recv, self._source_ref)

    def _describe(self) -> str:
        if self._connected_to is None:
            return self.target.label()
        name, url = self._connected_to
        return f"{name or 'source'} at {url}" if url else repr(name)


# NTSC rates are N*1000/1001 (29.97 = 30000/1001); a float given as 29.97 is within this of that, while
# a plain integer rate is 0.1 % away, so the two never mix up.
_NTSC_TOLERANCE = 2e-4


def frame_rate(fps: float) -> tuple[int, int]:
    """NDI's ``(frame_rate_N, frame_rate_D)`` for ``fps``: 29.97 -> 30000/1001, 59.94 -> 60000/1001, 30 -> 30/1.

    Receivers (and NDI's own clocking) expect the exact NTSC fractions; the nearest small fraction to
    the float 29.97 is 2997/100, which drifts from a 30000/1001 source by 3 frames an hour.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise BridgeError(f"NDI frame rate must be a positive number, not {fps!r}")
    whole = round(fps * 1001 / 1000)
    if whole >= 1 and abs(fps - whole * 1000 / 1001) <= _NTSC_TOLERANCE * fps:
        return whole * 1000, 1001
    rate = Fraction(fps).limit_denominator(1001)
    return rate.numerator, rate.denominator


class NDISink(OpenClose):
    """Publishes frames as an NDI source named ``rest`` (default ``dreamwire``)."""

    live = True  # the loop repeats the last output while the source is silent

    def __init__(self, rest: str = "", *, groups: str | None = None, fps: float = 30.0,
                 clock_video: bool = False) -> None:
        self.name = rest.strip() or "dreamwire"
        self._lib = _ndilib.load()
        self._groups = groups
        self._clock_video = clock_video
        self._rate = frame_rate(fps)
        self._send: Any = None
        self._video: Any = None
        self._keep: np.ndarray | None = None
        self._packer = FourChannelPacker()
        self._warned = StateLog(log)

    def open(self) -> None:
        if self._send is not None:
            return
        lib = self._lib
        _ndilib.acquire(lib)
        settings = lib.SendCreate(self.name, self._groups, clock_video=self._clock_video, clock_audio=False)
        self._send = lib.send_create(settings)
        if self._send is None:
            _ndilib.release(lib)
            raise BridgeError(f"NDI could not create a sender named {self.name!r}")
        self._video = lib.VideoFrameV2()
        _ndilib.sending(self.name, True)
        log.info("NDI: sending as %r", self.name)

    def close(self) -> None:
        if self._send is None:
            return
        self._lib.send_destroy(self._send)
        _ndilib.sending(self.name, False)
        self._send = self._video = self._keep = None
        _ndilib.release(self._lib)

    @property
    def connections(self) -> int:
        """How many receivers are watching right now."""
        return 0 if self._send is None else int(self._lib.send_get_no_connections(self._send, 0))

    def write(self, frame: Frame) -> None:
        if self._send is None:
            raise BridgeError("NDISink.write() called before open()")
        lib, video = self._lib, self._video
        layout = check_layout(frame.layout)
        pixels, order, alpha = self._packer.pack(host_pixels(frame.pixels, layout), layout)
        pixels = self._even(pixels)
        video.data = pixels  # the binding keeps only a pointer: hold the array until the next frame
        self._keep = pixels
        video.FourCC = getattr(lib, _SENT[(order, alpha)])
        rate = frame.frame_rate
        if not (rate is not None and len(rate) == 2 and rate[0] > 0 and rate[1] > 0):
            rate = self._rate
        video.frame_rate_N, video.frame_rate_D = int(rate[0]), int(rate[1])
        video.timecode = lib.SEND_TIMECODE_SYNTHESIZE if frame.timecode is None else int(frame.timecode)
        lib.send_send_video_v2(self._send, video)

    def _even(self, pixels: np.ndarray) -> np.ndarray:
        """NDI crops odd sizes to even ones; pad by repeating the last row/column instead."""
        height, width = pixels.shape[:2]
        if not (height % 2 or width % 2):
            return pixels
        self._warned.enter("odd", f"NDI: {width}x{height} is odd-sized; sending it padded to even by one "
                           "edge pixel", logging.WARNING)
        return np.ascontiguousarray(np.pad(pixels, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge"))
