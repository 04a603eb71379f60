"""A fake ``SpoutGL`` module: SpoutGL 0.1.1 (pybind11 over Spout 2.007) at the API boundary dreamwire uses.

SpoutGL only ships Windows wheels, so on Linux the Spout bridge is tested
against this stand-in. Every default and return convention below is read from
github.com/jlai/Python-SpoutGL at tag v0.1.1 (commit 5a5f651): the binding
``src/PySpoutGL.cpp`` and the Spout 2.007 sources it vendors and builds,
``vendor/SpoutGL/*.cpp`` (the same code as leadedge/Spout2 ``SPOUTSDK/SpoutGL/``).

Receiver (``SpoutReceiver``):

* Frame counting is read from the registry when the object is made, and the
  value ``Framecount`` is absent by default, so counting is off
  (``SpoutFrameCount.cpp:147-152``; :attr:`World.frame_count` is that value).
  Off: ``isFrameNew()`` is always true (``:145``), ``getSenderFrame()`` is 0
  (``:136``, ``:400-403``), ``isFrameCountEnabled()`` false (``:361-368``),
  and every read copies the texture again. On: a sender that does not count
  reads as frame 0 and every read is new (``:581-583``); the same count as
  last time means not new (``:588-591``) and the buffer is left untouched
  while ``receiveImage`` still returns true (``SpoutGL.cpp:1966-1968``).
* ``receiveImage(buffer | None, glFormat, invert, hostFbo)``: ``None`` or an
  empty buffer means "no pixels" (``PySpoutGL.cpp:181-191``); a buffer is
  checked against ``getSenderWidth/Height`` as they were *before* the call
  (``:193-198``, ``BufferError``). Spout then returns true at once while an
  update is flagged (``Spout.cpp:1838-1840``), false without a current OpenGL
  context on the calling thread (``SpoutGL.cpp:555-577``), releases and
  returns false when the sender is gone (``Spout.cpp:1915-1923``), returns
  true with the update flag set for a new sender, size or format
  (``:1861-1872``, ``:2497-2549``), false for no pixels (``:1876-1878``).
  Releasing sleeps 67 ms (``:798-799``) and zeroes the size (``:805-807``).
* Readback (``ReadGLDXpixels`` -> ``UnloadTexturePixels``, ``SpoutGL.cpp:1954-2028``,
  ``:2039-2145``): with Spout's defaults (registry ``Buffering`` absent, so
  ``m_bPBOavailable`` stays true, ``:270``, ``:289-290``; ``Buffers`` absent,
  so ``m_nBuffers = 2``, ``:277``, ``:293-295``; :attr:`World.buffering`,
  :attr:`World.pbo_buffers`) each copying read packs the texture into PBO
  ``i`` and maps PBO ``i+1``, the one the read ``m_nBuffers - 1`` reads earlier
  filled (``:2076-2077``, ``:2095-2134``). The PBOs are deleted on every
  release (``CleanupGL``, ``:1681-1685``, called by ``ReleaseReceiver``,
  ``Spout.cpp:785-788``, which runs for every new sender or size,
  ``:2497-2500``) and made again by the next read (``SpoutGL.cpp:2069-2073``),
  whose map of a PBO that holds nothing returns NULL: the buffer is left as
  it was (``:2126-2135``). A read Spout skips as an old frame
  (``:1966-1968``) packs nothing, so with counting on the PBOs only move on
  new frames. ``Buffering`` 0 reads synchronously (``ReadTextureData``).
* ``CreateInterop`` failing on connect (:attr:`World.interop_fails`):
  ``ReceiveImage`` returns false but the update flag stays set
  (``Spout.cpp:1861-1868``), so the caller sees ``isUpdated()`` and sizes its
  buffer; later reads return true (``m_bConnected``, ``:1913``) while
  ``ReadGLDXpixels`` returns early without an interop object and copies
  nothing (``SpoutGL.cpp:1958-1960``, result ignored at ``Spout.cpp:1903``);
  the failure is not retried until a release (``m_bInteropFailed``,
  ``SpoutGL.cpp:1235-1238``). ``isGLDXReady()`` is ``m_bUseGLDX``, the
  machine-wide interop test (``:479-482``, bound at ``PySpoutGL.cpp:82``;
  :attr:`World.gldx_ready`; the CPU-share path Spout takes when it is false
  is not modelled).
* Without ``GL_EXT_bgra`` in the driver's list (:attr:`World.gl_extensions`,
  tested in ``SpoutGLextensions.cpp:695-705``) a ``GL_BGRA_EXT`` read packs
  ``GL_RGBA`` (``GL_BGR_EXT``: ``GL_RGB``) into the same buffer
  (``Spout.cpp:1847-1853``); nothing bound reports it.
* ``isUpdated()`` returns the flag and clears it (``:974-979``);
  ``getSenderFormat()`` is the DXGI format, 87 (B8G8R8A8) until connected
  (``SpoutGL.cpp:245-246``), DX9 21/22 reported as 87 (``Spout.cpp:2484-2490``);
  ``getSenderName()`` is bound to ``GetSenderWidth`` (``PySpoutGL.cpp:208``);
  ``getSenderList()`` (``:207``, ``Spout.cpp:1083-1095``) and
  ``getActiveSender()`` (``PySpoutGL.cpp:90-97``) exist on both classes' common part.
* ``waitFrameSync(name, timeout)`` (``PySpoutGL.cpp:218``): true at once if
  the sender never made a sync event (``SpoutFrameCount.cpp:903-906``), else
  waits for the auto-reset event (``:1164-1174``): true if signalled, false
  on timeout (``:908-931``). A sender signals with ``setFrameSync(name)``
  (``:863-881``), as ``examples/image/sender.py:27`` does.

Sender: ``sendImage(buffer, width, height, glFormat, invert, hostFbo)`` with
width first whatever the lambda calls them (``PySpoutGL.cpp:137,152``),
``BufferError`` for a short or non-contiguous buffer (``:139-145``),
``ValueError`` for an unknown format (``:56-67``); a taken name becomes
``name_1``... ; it counts frames only when counting is on (``:482-507``).

OpenGL: ``createOpenGL()`` makes a context only if none is current on the
thread (``SpoutGL.cpp:875``, ``:952-954``); ``closeOpenGL()`` closes only the
context this object made, and fails from another thread (``:980-990``).

Tests drive the other application through :class:`World`: ``publish`` a frame
as TouchDesigner would, ``start`` a sender that produces ``fps`` frames a
second on the world's clock (use :class:`FakeClock` for exact counts),
``close`` it. ``world.readbacks`` counts texture copies into receiver buffers.
``World.driver_swaps_bgra`` plays the drivers reported to leave B8G8R8A8
textures unswizzled when read as ``GL_RGBA``.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

GL_RGBA, GL_BGRA_EXT, GL_RGB, GL_BGR_EXT = 0x1908, 0x80E1, 0x1907, 0x80E0
_ORDER = {GL_RGBA: [0, 1, 2, 3], GL_BGRA_EXT: [2, 1, 0, 3], GL_RGB: [0, 1, 2], GL_BGR_EXT: [2, 1, 0]}
_UNSWIZZLED = {GL_RGBA: GL_BGRA_EXT, GL_RGB: GL_BGR_EXT}
DXGI_B8G8R8A8, DXGI_B8G8R8X8, DXGI_R8G8B8A8 = 87, 88, 28


def get_bytes_per_pixel(gl_format: int) -> int:
    if gl_format not in _ORDER:
        raise ValueError("Unknown GL format")
    return len(_ORDER[gl_format])


def _view(buffer: object) -> memoryview:
    view = memoryview(buffer)  # type: ignore[arg-type]
    if not view.c_contiguous:
        raise BufferError("Buffer must be contiguous")
    return view


class FakeClock:
    """``perf_counter()`` and ``sleep()`` on a clock that moves only when slept on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def stamp(number: int, height: int = 8, width: int = 8) -> np.ndarray:
    """The RGBA picture of frame ``number`` (red/green carry it, blue is a ramp, so R != B)."""
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., 0], rgba[..., 1] = number & 255, number >> 8 & 255
    rgba[..., 2] = np.arange(width, dtype=np.uint8)[None, :] * 7 + 100
    rgba[..., 3] = 255
    return rgba


def frame_number(rgba: np.ndarray) -> int:
    return int(rgba[0, 0, 0]) | int(rgba[0, 0, 1]) << 8


@dataclass
class SharedSender:
    """One entry of Spout's shared sender list."""

    name: str
    rgba: np.ndarray
    incarnation: int
    dxgi_format: int = DXGI_B8G8R8A8
    counts: bool = False  # increments the frame-count semaphore (only when counting is on)
    sync: bool = False  # signals its sync event after each frame
    frame: int = 1
    fps: float | None = None  # None: frames come from publish(); else produced on the clock
    started: float = 0.0
    signalled: int = 0  # the frame the auto-reset sync event was last consumed at

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgba.shape[1]), int(self.rgba.shape[0])  # width, height, as Spout reports them

    def advance(self, now: float) -> None:
        if self.fps is not None:
            number = int(math.floor((now - self.started) * self.fps + 1e-6)) + 1
            if number != self.frame:
                self.frame, self.rgba = number, stamp(number, *self.rgba.shape[:2])


@dataclass
class World:
    """Spout's machine-wide state: the sender list, the active sender, the registry, GL contexts."""

    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep
    frame_count: bool = False  # the registry value Framecount == 1
    readback_cost: float = 0.0005  # seconds one texture copy takes (Spout: 1.6 ms at 1920x1080 RGBA)
    driver_swaps_bgra: bool = False
    buffering: bool = True  # registry Buffering absent: PBO readback (SpoutGL.cpp:270, 289-290)
    pbo_buffers: int = 2  # registry Buffers absent: m_nBuffers = 2 (SpoutGL.cpp:277, 293-295)
    gl_extensions: frozenset[str] = frozenset({"GL_EXT_bgra"})  # what the OpenGL driver lists
    interop_fails: bool = False  # CreateInterop fails for this receiver's senders (e.g. another GPU)
    gldx_ready: bool = True  # isGLDXReady(): the GL/DX interop test passed at OpenSpout
    senders: dict[str, SharedSender] = field(default_factory=dict)
    active: str | None = None
    readbacks: int = 0
    gl: dict[int, object] = field(default_factory=dict)  # thread id -> the object whose context is current
    _incarnations: itertools.count = field(default_factory=lambda: itertools.count(1))

    def register(self, wanted: str, rgba: np.ndarray, **options: object) -> str:
        name, n = wanted, 0
        while name in self.senders:
            n += 1
            name = f"{wanted}_{n}"
        options.setdefault("counts", self.frame_count)
        self.senders[name] = SharedSender(name, rgba, next(self._incarnations), **options)  # type: ignore[arg-type]
        self.active = self.active or name
        return name

    def publish(self, name: str, rgba: np.ndarray, **options: object) -> None:
        """Another application sends a frame (RGBA, any size) under ``name``; a new sender takes ``options``."""
        rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
        sender = self.senders.get(name)
        if sender is None:
            self.register(name, rgba, **options)
            return
        sender.rgba = rgba
        sender.frame += 1

    def start(self, name: str, fps: float, height: int = 8, width: int = 8, **options: object) -> SharedSender:
        """A sender that makes ``fps`` frames a second on the world's clock, each :func:`stamp`-ed."""
        self.register(name, stamp(1, height, width), fps=fps, started=self.clock(), **options)
        return self.senders[name]

    def current(self, name: str) -> SharedSender | None:
        sender = self.senders.get(name)
        if sender is not None:
            sender.advance(self.clock())
        return sender

    def close(self, name: str) -> None:
        self.senders.pop(name, None)
        if self.active == name:
            self.active = next(iter(self.senders), None)

    def has_gl(self) -> bool:
        return threading.get_ident() in self.gl


class _Common:
    """What ``addCommonDefs`` binds on both classes (``PySpoutGL.cpp:80-110``), OpenGL included."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._context_thread: int | None = None
        self._counting = world.frame_count  # the registry is read once, in the constructor

    def createOpenGL(self) -> bool:
        thread = threading.get_ident()
        if thread not in self._world.gl:
            self._world.gl[thread] = self
            self._context_thread = thread
        return True

    def closeOpenGL(self) -> bool:
        if self._context_thread is None:
            return True
        if self._context_thread != threading.get_ident():
            return False  # its context is current on another thread: wglDeleteContext fails
        del self._world.gl[self._context_thread]
        self._context_thread = None
        return True

    def getSenderList(self) -> list[str]:
        return sorted(self._world.senders)

    def getActiveSender(self) -> str | None:
        return self._world.active


class SpoutSender(_Common):
    def __init__(self, world: World) -> None:
        super().__init__(world)
        self._wanted: str = "python"  # Spout's default: the executable name
        self.name: str | None = None  # the registered name, once a frame was sent
        self.calls: list[tuple] = []

    def __enter__(self) -> SpoutSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.releaseSender()

    def setSenderName(self, name: str) -> None:
        self._wanted = name

    def sendImage(self, buffer: object, width: int, height: int, glFormat: int, invert: bool,
                  hostFbo: int) -> bool:
        view = _view(buffer)
        bpp = get_bytes_per_pixel(glFormat)
        if view.nbytes < width * height * bpp:
            raise BufferError("Buffer not large enough")
        self.calls.append(("sendImage", width, height, glFormat, invert, hostFbo))
        if not self._world.has_gl() or width == 0 or height == 0:
            return False
        pixels = np.frombuffer(view, np.uint8, width * height * bpp).reshape(height, width, bpp)
        rgba = np.full((height, width, 4), 255, np.uint8)
        rgba[..., _ORDER[glFormat]] = pixels  # scatter into RGBA order
        if invert:
            rgba = rgba[::-1].copy()
        if self.name is None:
            self.name = self._world.register(self._wanted, rgba, counts=self._counting)
        else:
            self._world.publish(self.name, rgba)
        return True

    def setFrameSync(self, name: str) -> None:
        sender = self._world.senders.get(name)
        if sender is not None:
            sender.sync = True

    def releaseSender(self) -> None:
        if self.name is not None:
            self._world.close(self.name)
        self.name = None


class SpoutReceiver(_Common):
    def __init__(self, world: World) -> None:
        super().__init__(world)
        self._setup_name = ""
        self._initialized = False
        self._incarnation = 0
        self._width = self._height = 0
        self._format = DXGI_B8G8R8A8
        self._updated = False
        self._frame_new = True  # m_bIsNewFrame: "default true for apps without frame count"
        self._frame_count = 0  # m_FrameCount, what getSenderFrame() returns
        self._last_count = 0
        self._interop = False  # m_hInteropObject made by CreateInterop
        self._pbos: list[np.ndarray | None] | None = None  # m_pbo: None until the first packing read
        self._pbo_index = 0  # PboIndex
        self.calls: list[tuple] = []

    def __enter__(self) -> SpoutReceiver:
        return self

    def __exit__(self, *_: object) -> None:
        self.releaseReceiver()

    def setReceiverName(self, name: str) -> None:
        self._setup_name = name or ""

    def receiveImage(self, buffer: object | None, glFormat: int, invert: bool, hostFbo: int) -> bool:
        self.calls.append(("receiveImage", None if buffer is None else "buffer", glFormat, invert, hostFbo))
        view = None if buffer is None else _view(buffer)
        if view is not None and not view.nbytes:
            view = None
        if view is not None and view.nbytes < self._width * self._height * get_bytes_per_pixel(glFormat):
            raise BufferError("Buffer not large enough")
        if self._updated:
            return True
        if not self._world.has_gl():
            return False
        sender = self._world.current(self._setup_name or (self._world.active or ""))
        if sender is None:
            self.releaseReceiver()
            return False
        if (sender.incarnation, sender.size, sender.dxgi_format) != (self._incarnation, (self._width, self._height),
                                                                     self._format):
            self.releaseReceiver()
            self._initialized, self._incarnation, self._format = True, sender.incarnation, sender.dxgi_format
            self._width, self._height = sender.size
            self._updated = True
            self._interop = not self._world.interop_fails
            return self._interop  # false when CreateInterop failed, with the update flag still set
        if view is None:
            return False
        if "GL_EXT_bgra" not in self._world.gl_extensions:
            glFormat = {GL_BGRA_EXT: GL_RGBA, GL_BGR_EXT: GL_RGB}.get(glFormat, glFormat)
        if self._interop and self._new_frame(sender):
            self._copy(sender, view, glFormat, invert)
        return True

    def _new_frame(self, sender: SharedSender) -> bool:
        """spoutFrameCount::GetNewFrame (SpoutFrameCount.cpp:536-606)."""
        if not self._counting:
            return True
        count = sender.frame if sender.counts else 0
        self._frame_count, self._frame_new = count, True
        if count == 0:
            return True
        if count == self._last_count:
            self._frame_new = False
            return False
        self._last_count = count
        return True

    def _copy(self, sender: SharedSender, view: memoryview, gl_format: int, invert: bool) -> None:
        self._world.readbacks += 1
        self._world.sleep(self._world.readback_cost)
        order = gl_format
        if self._world.driver_swaps_bgra and sender.dxgi_format in (DXGI_B8G8R8A8, DXGI_B8G8R8X8):
            order = _UNSWIZZLED.get(gl_format, gl_format)
        rgba = sender.rgba[::-1] if invert else sender.rgba
        out = np.frombuffer(view.cast("B"), np.uint8, self._width * self._height * get_bytes_per_pixel(gl_format))
        packed = rgba[..., _ORDER[order]].reshape(-1).copy()
        if not self._world.buffering:
            out[:] = packed  # ReadTextureData: glReadPixels straight into the buffer
            return
        count = self._world.pbo_buffers
        if self._pbos is None:
            self._pbos, self._pbo_index = [None] * count, 0
        self._pbo_index = (self._pbo_index + 1) % count
        self._pbos[self._pbo_index] = packed
        mapped = self._pbos[(self._pbo_index + 1) % count]
        if mapped is not None:  # glMapBuffer of a PBO that was never packed returns NULL: buffer untouched
            out[:] = mapped

    def waitFrameSync(self, senderName: str, timeout: int = 0) -> bool:
        sender = self._world.current(senderName)
        if sender is None or not sender.sync:
            return True  # no sync event: do not block
        if sender.frame <= sender.signalled:  # not signalled since the last wait: wait for the next frame
            due = timeout / 1000
            if sender.fps is not None:
                due = min(due, sender.started + sender.frame / sender.fps - self._world.clock())
            self._world.sleep(due)
            sender.advance(self._world.clock())
            if sender.frame <= sender.signalled:
                return False
        sender.signalled = sender.frame  # auto-reset: this wait consumed the signal
        return True

    def isGLDXReady(self) -> bool:
        return self._world.gldx_ready

    def isUpdated(self) -> bool:
        updated, self._updated = self._updated, False
        return updated

    def isConnected(self) -> bool:
        return self._initialized

    def isFrameNew(self) -> bool:
        return self._frame_new

    def isFrameCountEnabled(self) -> bool:
        return self._counting

    def getSenderFrame(self) -> int:
        return self._frame_count

    def getSenderFormat(self) -> int:
        return self._format

    def getSenderWidth(self) -> int:
        return self._width

    def getSenderHeight(self) -> int:
        return self._height

    def getSenderName(self) -> int:
        return self._width

    def releaseReceiver(self) -> None:
        if not self._initialized:
            return
        self._world.sleep(0.067)
        self._initialized = False
        self._incarnation = 0
        self._width = self._height = 0
        self._frame_count = self._last_count = 0
        self._interop, self._pbos = False, None  # CleanupInterop, CleanupGL (Spout.cpp:785-788)


def make_spoutgl(clock: FakeClock | None = None, **world: object) -> types.ModuleType:
    """A fresh fake ``SpoutGL`` module with its own :class:`World` (``module.world``)."""
    timing = {"clock": clock.perf_counter, "sleep": clock.sleep} if clock is not None else {}
    state = World(**timing, **world)  # type: ignore[arg-type]
    module = types.ModuleType("SpoutGL")
    module.__version__ = "0.1.1-fake"  # type: ignore[attr-defined]
    module.world = state  # type: ignore[attr-defined]
    module.SpoutSender = lambda: SpoutSender(state)  # type: ignore[attr-defined]
    module.SpoutReceiver = lambda: SpoutReceiver(state)  # type: ignore[attr-defined]
    enums = types.ModuleType("SpoutGL.enums")
    enums.GL_RGBA, enums.GL_BGRA_EXT, enums.GL_RGB, enums.GL_BGR_EXT = GL_RGBA, GL_BGRA_EXT, GL_RGB, GL_BGR_EXT  # type: ignore[attr-defined]
    helpers = types.ModuleType("SpoutGL.helpers")
    helpers.getBytesPerPixel = get_bytes_per_pixel  # type: ignore[attr-defined]
    module.enums, module.helpers = enums, helpers  # type: ignore[attr-defined]
    return module
