"""Which Spout reads are new frames, when the next read is worth doing, and in which byte order to read.

Spout itself rarely says whether a frame is new. Sources are SpoutGL 0.1.1's
vendored Spout 2.007 (github.com/jlai/Python-SpoutGL, tag v0.1.1 = 5a5f651,
``vendor/SpoutGL/``; the same code is in leadedge/Spout2 ``SPOUTSDK/SpoutGL/``):

* Frame counting is on only when the registry value ``Framecount`` is 1
  (``SpoutFrameCount.cpp:147-152``), which is not the default. When it is off,
  ``GetNewFrame`` returns true (``:536-542``), so ``isFrameNew()`` is always
  true (``:145``, ``:383-386``), every ``receiveImage`` reads the texture back
  again, and ``getSenderFrame()`` stays 0 (``:136``, ``:400-403``). Even with
  counting on, a sender that does not count reports frame 0 and every read is
  "new" (``:581-583``).
* When counting works, a read of an old frame leaves the buffer untouched and
  returns true (``SpoutGL.cpp:1966-1968``); ``isFrameNew()`` is then false.

So :class:`FrameWatch` trusts the counter only when it is enabled *and*
non-zero (``isFrameCountEnabled``, ``getSenderFrame``: ``PySpoutGL.cpp:215-216``),
and otherwise compares each read with the last frame it delivered: a 30 fps
sender then yields 30 frames a second, not one per poll. A picture that stays
the same is re-delivered every ``still_interval`` (a still image is a still
image whichever way it is counted, and the engine still follows prompt
changes); after a new frame it paces the next read to part of the interval
seen between frames, so a 30 fps sender costs about three readbacks a frame
instead of eight.

Byte order: Spout's default shared texture is ``DXGI_FORMAT_B8G8R8A8_UNORM``
(87, ``SpoutGL.cpp:245``), and DX9 senders' 21/22 arrive mapped to it
(``Spout.cpp:2484-2490``). Reading those as ``GL_RGBA`` leans on the driver's
swizzle, which daydreamlive/scope (``src/scope/server/spout/receiver.py``)
reports as leaving red and blue swapped on some drivers; reading in the
sender's own order (``getSenderFormat()``, ``PySpoutGL.cpp:211``) never needs it.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Any

import numpy as np

# DXGI formats whose bytes are B, G, R, A: B8G8R8A8_UNORM (87, Spout's default) and B8G8R8X8_UNORM (88).
BGRA_FORMATS = frozenset({87, 88})
_CHUNK = 1 << 18  # pixels compared per step, so a changed frame is usually told apart after the first step


def sender_layout(dxgi_format: int) -> str:
    """The byte order a sender's texture has: ``"BGRA"`` for B8G8R8A8/X8 senders, ``"RGBA"`` for the rest.

    10/16/32-bit and sRGB formats are converted to 8-bit RGBA by the GL readback itself.
    """
    return "BGRA" if int(dxgi_format) in BGRA_FORMATS else "RGBA"


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two equally shaped 4-byte-pixel arrays hold the same bytes (stops at the first difference)."""
    x, y = a.reshape(-1).view(np.uint32), b.reshape(-1).view(np.uint32)
    return all(np.array_equal(x[i:i + _CHUNK], y[i:i + _CHUNK]) for i in range(0, x.size, _CHUNK))


def swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """A copy of a (H, W, 4) RGBA/BGRA array with bytes 0 and 2 exchanged (the other layout)."""
    v = pixels.reshape(-1).view(np.uint32)
    keep, low = np.uint32(0xFF00FF00), np.uint32(0xFF)
    out = (v & keep) | ((v >> np.uint32(16)) & low) | ((v & low) << np.uint32(16))
    return out.view(np.uint8).reshape(pixels.shape)


# Spout keeps at most 4 PBOs (``m_pbo[4]``, ``SpoutGL.h:325``), so at most 3 copying reads after a connect come back
# untouched; more than this many, and Spout is not copying at all (a failed GL/DX interop, Spout.cpp:1861-1868).
MAX_UNTOUCHED = 4


def sentinel(shape: tuple[int, ...]) -> np.ndarray:
    """A connect's first buffer: a read that copies nothing leaves it as it is, so "untouched" is told
    apart from a frame, a black one included (a fixed pseudo-random pattern: no picture has it)."""
    block = np.random.default_rng(0x5907).integers(0, 256, 4096, dtype=np.uint8)
    return np.resize(block, int(np.prod(shape))).reshape(shape)


class FrameWatch:
    """Tells new frames from repeated reads of one connected sender, when to read next, and how late reads are.

    ``target`` is the buffer the next ``receiveImage`` fills; after
    :meth:`check` said a read is new, :attr:`pixels` holds it (the caller copies it out: later reads
    overwrite the buffers) and :attr:`captured` says when Spout copied those pixels from the texture.

    Lag: with Spout's default PBO readback (``UnloadTexturePixels``, ``m_nBuffers = 2``,
    ``SpoutGL.cpp:277, 2068-2134``) each copying read maps the PBO the *previous* copying read filled,
    and the first one after a connect or resize maps a PBO that holds nothing and leaves the buffer
    untouched (the PBOs are deleted on every release, ``SpoutGL.cpp:1681-1685``, and recreated,
    ``:2069-2073``; ``glMapBuffer`` of the empty one returns NULL, ``:2126-2135``). A read "copies"
    when Spout does not skip it as an old frame (``SpoutGL.cpp:1966-1968``): every read when frame
    counting is off, only reads of a new count when it is on. So the untouched copying reads after
    a connect are counted (:attr:`lag`: 1 by default, 0 with Buffering off in SpoutSettings, up to 3
    with more buffers), are never delivered (no black frame), and every later frame is dated by the
    copying read ``lag`` reads earlier. With counting on, a sender's last frame before it pauses sits in
    Spout's PBO until it sends another: no call reaches it (every read path checks ``GetNewFrame``
    first); :attr:`held_back` says when that is the case.
    """

    def __init__(self, shape: tuple[int, int, int], now: float, *, still_interval: float | None = 0.1,
                 pace: float = 0.75) -> None:
        self._sentinel: np.ndarray | None = sentinel(shape)
        self.target = self._sentinel.copy()
        # The last frame delivered. All zeros counts as seen: a black sender is a frame once it differs,
        # or a still after still_interval.
        self.pixels = np.zeros(shape, np.uint8)
        self.counted = False  # the sender's frame counter decides (else: comparing pixels)
        self.captured = now
        self.lag: int | None = None  # untouched copying reads after the connect, once one read copied
        self.untouched = 0  # copying reads so far that copied nothing
        self._reads: deque[float] = deque(maxlen=MAX_UNTOUCHED + 1)  # times of the latest copying reads
        self._number = 0
        self._still = still_interval
        self._pace = pace
        self._delivered = now
        self._changed: float | None = None
        self._intervals: deque[float] = deque(maxlen=8)

    @property
    def stuck(self) -> bool:
        """More untouched copying reads than any PBO depth explains: Spout copies no pixels at all."""
        return self.lag is None and self.untouched > MAX_UNTOUCHED

    @property
    def held_back(self) -> bool:
        """Counting with a PBO lag: the newest counted frame waits in Spout until the sender's next one."""
        return self.counted and bool(self.untouched)

    def check(self, receiver: Any, now: float) -> bool:
        """Whether the read just made into :attr:`target` is a frame to deliver."""
        number = int(receiver.getSenderFrame()) if receiver.isFrameCountEnabled() else 0
        counted, self.counted = self.counted, number > 0
        copied = not self.counted or (bool(receiver.isFrameNew()) and number != self._number)
        self._number = number if self.counted else 0
        if copied:
            self._reads.append(now)
        if self._sentinel is not None:
            if not copied:
                return False  # an old counted frame: Spout skipped the read, the mark is still there
            if same_pixels(self.target, self._sentinel):
                self.untouched += 1
                return False
            self.lag, self._sentinel = self.untouched, None
            self._reads = deque(list(self._reads)[-(self.lag + 1):], maxlen=self.lag + 1)
        if self.counted:  # an old frame left the buffer untouched: it still holds the last new one
            new = copied
            if new:
                self.pixels = self.target
        else:
            if counted:  # counting stopped: the two buffers may be one, compare against a copy
                self.pixels = self.pixels.copy()
            new = not same_pixels(self.target, self.pixels)
            if new:
                self.pixels, self.target = self.target, self.pixels
                if self._changed is not None:
                    self._intervals.append(now - self._changed)
                self._changed = now
            else:
                new = self._still is not None and now - self._delivered >= self._still
        if new:
            self._delivered = now
            if copied:  # the pixels are what the texture held at the copying read `lag` reads ago
                self.captured = self._reads[0]
        return new

    def next_read(self) -> float:
        """The earliest time another readback is worth doing (paced only while comparing pixels)."""
        if self.counted or self._changed is None or len(self._intervals) < 2:
            return -float("inf")
        return self._changed + self._pace * median(self._intervals)
