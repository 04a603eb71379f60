"""Spout in and out (Windows) through SpoutGL 0.1.x.

``spout:NAME`` receives from the Spout sender NAME (``spout:`` = the active
sender); ``--sink spout:NAME`` publishes one (default ``dreamwire``).

Why it is shaped like this (line numbers: SpoutGL 0.1.1, github.com/jlai/Python-SpoutGL
tag v0.1.1, ``src/PySpoutGL.cpp`` and its vendored Spout 2.007 in ``vendor/SpoutGL/``):

* SpoutGL ships Windows wheels only, so it is imported when a bridge is made,
  and a fake module can be injected (``spoutgl=`` option, or
  ``sys.modules["SpoutGL"]``) to test the logic on Linux.
* Binding facts: ``receiveImage(None, ...)`` only waits for the sender's
  details (``PySpoutGL.cpp:180-191``), a buffer is checked against the size
  Spout knew before the call (``:193-198``), so it is sized after
  ``isUpdated()`` (which also flags every later resize or new sender);
  ``getSenderName`` is bound to the width (``:208``), so the name reported
  is the one asked for (or ``getActiveSender()``, ``:90-97``);
  ``sendImage`` takes ``(buffer, width, height, ...)`` whatever its parameter
  names say (``:137,152``); ``getSenderList`` lists senders (``:207``).
* New frames: Spout's own "is it new" is off by default, so
  :mod:`dreamwire.bridges._spoutframes` decides (the sender's counter when it
  counts, else a pixel comparison), and a sender that signals each frame with
  ``setFrameSync`` is waited for with ``waitFrameSync`` (``:218``, GIL
  released), as SpoutGL's own ``examples/image/receiver.py:26`` does; for a
  sender without that event it returns at once (``SpoutFrameCount.cpp:903-906``).
* Byte order: ``layout="auto"`` reads in the sender's order
  (``getSenderFormat()``, ``:211``): BGRA for B8G8R8A8 senders (Spout's
  default), RGBA otherwise; the loop converts on the device. ``"RGBA"`` or
  ``"BGRA"`` get that layout, swapped on the CPU when the sender differs.
  Spout reads ``GL_RGBA`` instead of ``GL_BGRA_EXT`` when the driver does not
  list ``GL_EXT_bgra`` (``Spout.cpp:1847-1853``) and nothing bound says so, so
  the extension is checked as Spout does (:mod:`dreamwire.bridges._glext`)
  and such frames are read and labelled RGBA.
* Readback lag: Spout's PBO readback returns the texture as of the previous
  copying read and nothing on the first one after a connect or resize
  (:class:`~dreamwire.bridges._spoutframes.FrameWatch` has the sources): those
  reads are not delivered, frames are dated by the read that copied them, and
  reads that never copy anything (a failed ``CreateInterop`` leaves the update
  flag set and every later read "succeeds" untouched, ``Spout.cpp:1861-1868``)
  are reported once with ``isGLDXReady()`` and what to do, instead of black.
* OpenGL: a context is made current lazily on the first ``read``/``write`` (so
  on the loop's thread) and shared by the bridges on that thread
  (:mod:`dreamwire.bridges._glcontext`): SpoutGL's ``createOpenGL()`` by
  default, a hidden glfw window made at ``open()`` on the main thread with
  ``gl="glfw"``, or none with ``gl="none"`` (the host has one current).
* Where frames cross to the CPU today: ``receiveImage`` reads the shared
  texture back into host memory (glReadPixels via PBO inside Spout) and
  ``sendImage`` uploads host pixels. A GPU path (``receiveTexture`` plus
  CUDA-OpenGL interop) is not implemented yet; see docs/bridges.md.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

from dreamwire.bridges._common import Every, OpenClose, check_layout, host_pixels
from dreamwire.bridges._glcontext import GlfwWindow, Release, share_context, spout_context
from dreamwire.bridges._glext import gl_extensions
from dreamwire.bridges._spoutframes import FrameWatch, sender_layout, swap_red_blue
from dreamwire.bridges.base import BridgeError, Frame
from dreamwire.logs import StateLog

log = logging.getLogger(__name__)

MAX_NAME = 255  # Spout keeps sender names in char[256]
_GL_ENUMS = {"RGBA": "GL_RGBA", "BGRA": "GL_BGRA_EXT", "RGB": "GL_RGB", "BGR": "GL_BGR_EXT"}
_GL_KINDS = ("spout", "glfw", "none")


def load_spoutgl(module: ModuleType | None = None) -> ModuleType:
    """The SpoutGL module (or the injected one), or a :class:`BridgeError` saying what to do."""
    if module is not None:
        return module
    try:
        return importlib.import_module("SpoutGL")
    except ImportError as exc:
        if sys.platform != "win32":
            raise BridgeError(
                f"Spout needs Windows: SpoutGL only exists for win32/win_amd64 (this is {sys.platform}). "
                "On Linux/macOS use NDI instead (ndi:NAME, pip install 'dreamwire[ndi]'); "
                "on Windows: pip install 'dreamwire[spout]'"
            ) from exc
        raise BridgeError(f"Spout needs SpoutGL: pip install 'dreamwire[spout]' ({exc})") from exc


def list_senders(timeout: float = 1.0, *, spoutgl: ModuleType | None = None) -> list[str]:
    """Names of the Spout senders on this machine (Spout's list is instant; ``timeout`` is unused).

    ``getSenderList`` reads Spout's shared sender names (``Spout.cpp:1083-1095``); no OpenGL needed.
    """
    receiver = load_spoutgl(spoutgl).SpoutReceiver()
    try:
        return sorted(str(name) for name in receiver.getSenderList())
    finally:
        receiver.releaseReceiver()


class _SpoutBridge(OpenClose):
    """What source and sink share: module loading, the per-thread GL context, the thread check."""

    def __init__(self, spoutgl: ModuleType | None, gl: str) -> None:
        if gl not in _GL_KINDS:
            raise BridgeError(f"gl must be one of {', '.join(_GL_KINDS)}, not {gl!r}")
        self._module = load_spoutgl(spoutgl)
        self._gl_kind = gl
        self._window: GlfwWindow | None = None
        self._release_gl: Release | None = None
        self._gl_thread: int | None = None

    def _enum(self, layout: str) -> int:
        return int(getattr(self._module.enums, _GL_ENUMS[layout]))

    def _create(self, kind: str, set_name: str, name: str) -> Any:
        """The named SpoutReceiver/SpoutSender, made on the opening thread (a glfw window needs the main one)."""
        if self._gl_kind == "glfw" and self._window is None:
            self._window = GlfwWindow()  # on the thread that opens (the main one), as GLFW requires
        handle = getattr(self._module, kind)()
        getattr(handle, set_name)(name)
        return handle

    def _ensure_gl(self, spout_object: Any) -> None:
        thread = threading.get_ident()
        if self._gl_thread is None:
            if self._gl_kind == "spout":
                self._release_gl = share_context(lambda: spout_context(spout_object))
            elif self._window is not None:
                self._release_gl = share_context(self._window.make_current)
            self._gl_thread = thread
        elif thread != self._gl_thread:
            raise BridgeError("a Spout bridge must be used from the thread that first read/wrote it "
                              "(its OpenGL context is current only there)")

    def _close_gl(self) -> None:
        if self._release_gl is not None:
            self._release_gl()
        if self._window is not None:
            self._window.destroy()
        self._release_gl = self._gl_thread = self._window = None


class SpoutSource(_SpoutBridge):
    """Receives a Spout sender in its own byte order (``layout="auto"``), or as RGBA/BGRA; follows resizes."""

    def __init__(self, rest: str = "", *, layout: str = "auto", invert: bool = False, gl: str = "spout",
                 spoutgl: ModuleType | None = None, retry_interval: float = 0.25,
                 poll_interval: float = 0.004, still_interval: float | None = 0.1,
                 extensions: Callable[[], Collection[str] | None] = gl_extensions) -> None:
        super().__init__(spoutgl, gl)
        self.sender = rest.strip()
        if len(self.sender) > MAX_NAME:
            raise BridgeError(f"Spout sender names are at most {MAX_NAME} characters")
        self.layout = "auto" if str(layout).lower() == "auto" else check_layout(layout)
        if self.layout not in ("auto", "RGBA", "BGRA"):
            raise BridgeError(f"the Spout source delivers auto (the sender's order), RGBA or BGRA, not {layout!r}")
        self._invert = invert
        self._retry = Every(retry_interval)
        self._poll_interval = poll_interval
        self._still = still_interval
        self._status = StateLog(log)
        self._receiver: Any = None
        self._watch: FrameWatch | None = None
        self._read_as = "RGBA"  # the sender's byte order, which receiveImage is asked for
        self._sync_name = self.sender
        self._frame_id = 0
        self._extensions = extensions
        self._bgra: bool | None = None  # whether Spout reads GL_BGRA_EXT as asked (asked once, on the first connect)
        self._told: set[str] = set()  # the one-time notes already logged

    @property
    def _label(self) -> str:
        return f"Spout sender {self.sender!r}" if self.sender else "the active Spout sender"

    def open(self) -> None:
        if self._receiver is None:
            self._receiver = self._create("SpoutReceiver", "setReceiverName", self.sender)

    def close(self) -> None:
        if self._receiver is None:
            return
        self._receiver.releaseReceiver()
        self._close_gl()
        self._receiver = self._watch = None

    def read(self, timeout: float) -> Frame | None:
        if self._receiver is None:
            raise BridgeError("SpoutSource.read() called before open()")
        self._ensure_gl(self._receiver)
        deadline = time.perf_counter() + max(0.0, timeout)
        while True:
            frame = self._poll(deadline)
            now = time.perf_counter()
            left = deadline - now
            if frame is not None or left <= 0:
                return frame
            if self._watch is None or self._watch.stuck:
                pause = self._retry.interval
            else:
                pause = max(self._poll_interval, self._watch.next_read() - now)
            time.sleep(min(pause, left))

    def _poll(self, deadline: float) -> Frame | None:
        receiver, watch = self._receiver, self._watch
        now = time.perf_counter()
        if watch is None and not self._retry.due(now):
            return None  # not connected: look for the sender only every retry_interval
        if watch is not None:
            # A sender that signals each frame (setFrameSync) is waited for here, without reading back;
            # False means no new frame before the timeout. Without that event it returns True at once.
            wait_ms = int(min(max(deadline - now, 0.0), 0.1) * 1000)
            if not receiver.waitFrameSync(self._sync_name, wait_ms):
                return None
        ok = receiver.receiveImage(None if watch is None else watch.target, self._enum(self._read_as),
                                   self._invert, 0)
        if receiver.isUpdated():  # new sender or new size: re-allocate, read on the next poll
            self._connected(receiver)
            return None
        if not ok:
            if watch is not None:
                self._status.enter("lost", f"Spout: lost {self._label}; holding the last output and waiting",
                                   logging.WARNING)
                self._watch = None
                self._retry.reset()
            elif self._status.state is None:
                self._status.enter("waiting", f"Spout: waiting for {self._label}")
            return None
        now = time.perf_counter()
        if watch is None:
            return None
        new = watch.check(receiver, now)
        if not new:
            self._explain(receiver, watch)
            return None
        pixels = watch.pixels.copy() if self.layout in ("auto", self._read_as) else swap_red_blue(watch.pixels)
        self._frame_id += 1
        return Frame(pixels=pixels, layout=self._read_as if self.layout == "auto" else self.layout,
                     frame_id=self._frame_id, capture_time=watch.captured, timecode=None,
                     sender=self._sync_name or None)

    def _explain(self, receiver: Any, watch: FrameWatch) -> None:
        """Say once why reads bring nothing, when Spout is the reason."""
        if watch.stuck and not (self._status.state or "").startswith("no pixels"):
            ready = bool(receiver.isGLDXReady())
            cause = ("the OpenGL/DirectX interop could not open the sender's texture (most likely Spout's "
                     "CreateInterop failed); usually the sender and Python run on different GPUs"
                     if ready else "this machine has no working OpenGL/DirectX interop")
            self._status.enter(
                f"no pixels: {self._status.state}",
                f"Spout: connected to {self._label} but Spout copies no pixels (isGLDXReady()={ready}): {cause}. "
                "Give python.exe and the sender the same GPU (Windows Settings > Display > Graphics), or turn on "
                "CPU sharing in SpoutSettings; then restart the sender. Spout's own report: "
                "%APPDATA%\\Spout\\python_diagnostics.log", logging.ERROR)
        elif watch.held_back and "held" not in self._told:
            self._told.add("held")
            log.warning("Spout: frame counting and PBO buffering are both on, so each frame of %s arrives with "
                        "the sender's next one and a paused sender's last frame stays in Spout's buffer; turn "
                        "Buffering off in SpoutSettings (or frame counting) to get every frame at once",
                        self._label)

    def _connected(self, receiver: Any) -> None:
        width, height = int(receiver.getSenderWidth()), int(receiver.getSenderHeight())
        self._read_as = sender_layout(receiver.getSenderFormat())
        if self._read_as == "BGRA" and not self._reads_bgra():
            self._read_as = "RGBA"  # what Spout would read anyway, now labelled as such
        self._sync_name = self.sender or str(receiver.getActiveSender() or "")
        self._watch = (FrameWatch((height, width, 4), time.perf_counter(), still_interval=self._still)
                       if width and height else None)
        self._status.enter(f"connected {width}x{height}",
                           f"Spout: receiving {self._label} at {width}x{height} ({self._read_as})")

    def _reads_bgra(self) -> bool:
        """Whether Spout honours GL_BGRA_EXT here: it swaps in GL_RGBA without GL_EXT_bgra (Spout.cpp:1847-1853)."""
        if self._bgra is None:
            names = self._extensions()
            self._bgra = names is None or "GL_EXT_bgra" in names  # None: not Windows, nothing to ask
            if not self._bgra:
                log.info("Spout: this OpenGL driver does not list GL_EXT_bgra, so Spout reads RGBA; "
                         "frames from %s arrive as RGBA", self._label)
        return self._bgra


class SpoutSink(_SpoutBridge):
    """Publishes frames as the Spout sender ``rest`` (default ``dreamwire``); any RGB/RGBA/BGR/BGRA."""

    live = True  # the loop repeats the last output while the source is silent

    def __init__(self, rest: str = "", *, invert: bool = False, gl: str = "spout",
                 spoutgl: ModuleType | None = None) -> None:
        super().__init__(spoutgl, gl)
        self.name = rest.strip() or "dreamwire"
        if len(self.name) > MAX_NAME:
            raise BridgeError(f"Spout sender names are at most {MAX_NAME} characters")
        self._invert = invert
        self._sender: Any = None
        self._status = StateLog(log)

    def open(self) -> None:
        if self._sender is None:
            self._sender = self._create("SpoutSender", "setSenderName", self.name)
            log.info("Spout: sending as %r (Spout appends _1, _2 ... if another sender has that name)", self.name)

    def close(self) -> None:
        if self._sender is None:
            return
        self._sender.releaseSender()
        self._close_gl()
        self._sender = None

    def write(self, frame: Frame) -> None:
        if self._sender is None:
            raise BridgeError("SpoutSink.write() called before open()")
        self._ensure_gl(self._sender)
        layout = check_layout(frame.layout)
        pixels = host_pixels(frame.pixels, layout)
        height, width = pixels.shape[:2]
        if self._sender.sendImage(pixels, width, height, self._enum(layout), self._invert, 0):
            self._status.enter("ok", f"Spout: sender {self.name!r} is live")
        else:
            self._status.enter("failed", f"Spout: sendImage failed for {self.name!r} ({width}x{height} {layout}); "
                               "is the OpenGL/DirectX interop available?", logging.ERROR)
