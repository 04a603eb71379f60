"""Spout in and out (Windows) through SpoutGL 0.1.x.

``spout:NAME`` receives from the Spout sender NAME (``spout:`` = the active
sender); ``--sink spout:NAME`` publishes one (default ``dreamwire``).

Why it is shaped like this:

* SpoutGL ships Windows wheels only, so it is imported when a bridge is made,
  and a fake module can be injected (``spoutgl=`` option, or
  ``sys.modules["SpoutGL"]``) to test the logic on Linux.
* SpoutGL 0.1.1 binding quirks: ``getSenderName`` is bound to the width (so the
  sender name is never read back; we report the name we asked for);
  ``receiveImage`` is first called with ``None`` and the buffer is sized only
  after ``isUpdated()`` (which also flags every later resize or new sender);
  ``sendImage`` takes ``(buffer, width, height, ...)`` whatever its parameter
  names say.
* Spout needs an OpenGL context on the thread that sends or receives. It is
  made lazily on the first ``read``/``write`` (so it lands on the loop's
  thread): by default with SpoutGL's own ``createOpenGL()`` (a hidden window),
  or a hidden glfw window (``gl="glfw"``), or not at all (``gl="none"``, the
  host already has one current).
* Spout has no "wait for the next frame" that every sender supports, so ``read``
  polls every ``poll_interval`` (4 ms); each poll of a connected sender is a
  texture readback, so polling faster costs GPU/CPU time for nothing.
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
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from dreamwire.bridges._common import Every, OpenClose, check_layout, host_pixels
from dreamwire.bridges.base import BridgeError, Frame
from dreamwire.logs import StateLog

log = logging.getLogger(__name__)

MAX_NAME = 255  # Spout keeps sender names in char[256]
_GL_ENUMS = {"RGBA": "GL_RGBA", "BGRA": "GL_BGRA_EXT", "RGB": "GL_RGB", "BGR": "GL_BGR_EXT"}


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
    """Names of the Spout senders on this machine (Spout's list is instant; ``timeout`` is unused)."""
    module = load_spoutgl(spoutgl)
    receiver = module.SpoutReceiver()
    try:
        if not hasattr(receiver, "getSenderList"):
            raise BridgeError(
                f"SpoutGL {getattr(module, '__version__', '?')} cannot list senders (no getSenderList); "
                "name the sender explicitly (spout:NAME) or upgrade SpoutGL"
            )
        return sorted(str(name) for name in receiver.getSenderList())
    finally:
        receiver.releaseReceiver()


def _gl_context(kind: str, spout_object: Any) -> Callable[[], None]:
    """Make an OpenGL context current on this thread; returns the function that releases it."""
    if kind == "none":
        return lambda: None
    if kind == "spout":
        if not spout_object.createOpenGL():
            raise BridgeError("Spout could not create its hidden OpenGL window (createOpenGL failed); "
                              "check the GPU driver, or try gl='glfw'")
        return spout_object.closeOpenGL
    if kind == "glfw":
        return _glfw_context()
    raise BridgeError(f"gl must be 'spout', 'glfw' or 'none', not {kind!r}")


def _glfw_context() -> Callable[[], None]:
    """A hidden 16x16 glfw window whose context is made current (real Windows path only)."""
    try:
        glfw = importlib.import_module("glfw")
    except ImportError as exc:
        raise BridgeError("gl='glfw' needs glfw: pip install 'dreamwire[spout]'") from exc
    if not glfw.init():
        raise BridgeError("glfw.init() failed: no display/GPU available for an OpenGL context")
    glfw.window_hint(glfw.VISIBLE, glfw.FALSE)
    window = glfw.create_window(16, 16, "dreamwire-spout", None, None)
    if not window:
        glfw.terminate()
        raise BridgeError("glfw could not create a hidden OpenGL window")
    glfw.make_context_current(window)

    def close() -> None:
        glfw.destroy_window(window)
        glfw.terminate()

    return close


class _SpoutBridge(OpenClose):
    """What source and sink share: module loading, lazy GL context, thread check."""

    def __init__(self, spoutgl: ModuleType | None, gl: str) -> None:
        self._module = load_spoutgl(spoutgl)
        self._gl_kind = gl
        self._close_gl: Callable[[], None] | None = None
        self._gl_thread: int | None = None

    def _enum(self, layout: str) -> int:
        return int(getattr(self._module.enums, _GL_ENUMS[layout]))

    def _ensure_gl(self, spout_object: Any) -> None:
        thread = threading.get_ident()
        if self._close_gl is None:
            self._close_gl = _gl_context(self._gl_kind, spout_object)
            self._gl_thread = thread
        elif thread != self._gl_thread:
            raise BridgeError("a Spout bridge must be used from the thread that first read/wrote it "
                              "(its OpenGL context is current only there)")

    def _release_gl(self) -> None:
        if self._close_gl is not None:
            self._close_gl()
        self._close_gl = self._gl_thread = None


class SpoutSource(_SpoutBridge):
    """Receives a Spout sender as RGBA (default) or BGRA frames; waits for it and follows resizes."""

    def __init__(self, rest: str = "", *, layout: str = "RGBA", invert: bool = False, gl: str = "spout",
                 spoutgl: ModuleType | None = None, retry_interval: float = 0.25,
                 poll_interval: float = 0.004) -> None:
        super().__init__(spoutgl, gl)
        self.sender = rest.strip()
        if len(self.sender) > MAX_NAME:
            raise BridgeError(f"Spout sender names are at most {MAX_NAME} characters")
        self.layout = check_layout(layout)
        if self.layout not in ("RGBA", "BGRA"):
            raise BridgeError(f"the Spout source delivers RGBA or BGRA, not {layout!r}")
        self._invert = invert
        self._retry = Every(retry_interval)
        self._poll_interval = poll_interval
        self._status = StateLog(log)
        self._receiver: Any = None
        self._buffer: np.ndarray | None = None
        self._frame_id = 0

    @property
    def _label(self) -> str:
        return f"Spout sender {self.sender!r}" if self.sender else "the active Spout sender"

    def open(self) -> None:
        if self._receiver is not None:
            return
        self._receiver = self._module.SpoutReceiver()
        self._receiver.setReceiverName(self.sender)

    def close(self) -> None:
        if self._receiver is None:
            return
        self._receiver.releaseReceiver()
        self._release_gl()
        self._receiver = self._buffer = None

    def read(self, timeout: float) -> Frame | None:
        if self._receiver is None:
            raise BridgeError("SpoutSource.read() called before open()")
        self._ensure_gl(self._receiver)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            frame = self._poll()
            left = deadline - time.monotonic()
            if frame is not None or left <= 0:
                return frame
            pause = self._poll_interval if self._buffer is not None else self._retry.interval
            time.sleep(min(pause, left))

    def _poll(self) -> Frame | None:
        receiver = self._receiver
        if self._buffer is None and not self._retry.due():
            return None  # not connected: look for the sender only every retry_interval
        ok = receiver.receiveImage(self._buffer, self._enum(self.layout), self._invert, 0)
        if receiver.isUpdated():  # new sender or new size: re-allocate, read on the next poll
            width, height = int(receiver.getSenderWidth()), int(receiver.getSenderHeight())
            self._buffer = np.zeros((height, width, 4), np.uint8) if width and height else None
            self._status.enter(f"connected {width}x{height}", f"Spout: receiving {self._label} at {width}x{height}")
            return None
        if not ok:
            if self._buffer is not None:
                self._status.enter("lost", f"Spout: lost {self._label}; holding the last output and waiting",
                                   logging.WARNING)
                self._buffer = None
                self._retry.reset()
            elif self._status.state is None:
                self._status.enter("waiting", f"Spout: waiting for {self._label}")
            return None
        if self._buffer is None or not receiver.isFrameNew():
            return None
        self._frame_id += 1
        return Frame(pixels=self._buffer.copy(), layout=self.layout, frame_id=self._frame_id,
                     capture_time=time.monotonic(), timecode=None, sender=self.sender)


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
        if self._sender is not None:
            return
        self._sender = self._module.SpoutSender()
        self._sender.setSenderName(self.name)
        log.info("Spout: sending as %r (Spout appends _1, _2 ... if another sender has that name)", self.name)

    def close(self) -> None:
        if self._sender is None:
            return
        self._sender.releaseSender()
        self._release_gl()
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
