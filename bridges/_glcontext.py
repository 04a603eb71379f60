"""OpenGL contexts for the Spout bridges: one per thread, shared, and GLFW touched only on the main thread.

Why this is its own module:

* Spout reads and writes through OpenGL on the calling thread, so each thread
  that uses a bridge needs a current context. SpoutGL's ``createOpenGL()``
  makes one only if none is current on the thread, and ``closeOpenGL()``
  releases whatever is current there (``vendor/SpoutGL/SpoutGL.cpp:875`` and
  ``:980-990`` in SpoutGL 0.1.1). So two bridges on one thread share one
  context, and closing the first would pull it from under the second. Here
  the context is counted per thread and released by the last bridge on it.
* A hidden window must be destroyed on the thread that made it (Win32), so a
  release asked from another thread is skipped with a log line, not forced.
* GLFW's ``glfwInit``, ``glfwWindowHint``, ``glfwCreateWindow``,
  ``glfwDestroyWindow`` and ``glfwTerminate`` are main-thread only, and
  terminate destroys every window; only ``glfwMakeContextCurrent`` may be
  called from any thread (glfw ``include/GLFW/glfw3.h:2214, 2250, 3048, 3231,
  3260, 6126``). So GLFW is initialised once per process, windows are made
  when a bridge is opened on the main thread, their contexts are made current
  on the loop's threads, windows closed elsewhere wait for the next
  main-thread call, and terminate runs once, at exit.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dreamwire.bridges.base import BridgeError

log = logging.getLogger(__name__)

Release = Callable[[], None]

_per_thread = threading.local()  # .users: bridges using this thread's context; .close: its closer
_glfw_lock = threading.Lock()
_glfw: ModuleType | None = None  # the initialised glfw module, once
_doomed: list[Any] = []  # glfw windows released off the main thread, destroyed by the next main-thread call


def share_context(make: Callable[[], Release]) -> Release:
    """Make a context current on this thread unless a bridge already did; returns this bridge's release.

    ``make`` creates and makes current a context and returns what closes it. The
    last release on the thread closes it; a release from another thread does nothing.
    """
    users = getattr(_per_thread, "users", 0)
    if users == 0:
        _per_thread.close = make()
    _per_thread.users = users + 1
    owner = threading.get_ident()
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        if threading.get_ident() != owner:
            log.warning("Spout: an OpenGL context can only be released on its own thread; leaving it")
            return
        released = True
        _per_thread.users -= 1
        if _per_thread.users == 0:
            close, _per_thread.close = _per_thread.close, None
            close()

    return release


def spout_context(spout_object: Any) -> Release:
    """SpoutGL's own hidden-window context (``createOpenGL``/``closeOpenGL``)."""
    if not spout_object.createOpenGL():
        raise BridgeError("Spout could not create its hidden OpenGL window (createOpenGL failed); "
                          "check the GPU driver, or try gl='glfw'")
    return spout_object.closeOpenGL


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _glfw_module() -> ModuleType:
    """glfw, initialised once (main thread), with its terminate registered for exit (also main thread)."""
    global _glfw
    with _glfw_lock:
        if _glfw is not None:
            return _glfw
        try:
            glfw = importlib.import_module("glfw")
        except ImportError as exc:
            raise BridgeError("gl='glfw' needs glfw: pip install 'dreamwire[spout]'") from exc
        if not glfw.init():
            raise BridgeError("glfw.init() failed: no display/GPU available for an OpenGL context")
        atexit.register(shutdown_glfw)
        _glfw = glfw
        return glfw


def shutdown_glfw() -> None:
    """Terminate GLFW (destroying any window left) if it was initialised; main thread only, run at exit."""
    global _glfw
    if not _on_main_thread():
        return
    with _glfw_lock:
        glfw, _glfw = _glfw, None
        _doomed.clear()
    if glfw is not None:
        glfw.terminate()


class GlfwWindow:
    """A hidden 16x16 GLFW window made on the main thread; :meth:`make_current` may run on any thread."""

    def __init__(self) -> None:
        if not _on_main_thread():
            raise BridgeError("gl='glfw' must be opened on the main thread (GLFW creates windows only there); "
                              "use the default gl='spout' instead")
        glfw = self._glfw = _glfw_module()
        self._destroy_doomed()
        glfw.window_hint(glfw.VISIBLE, glfw.FALSE)
        self.window = glfw.create_window(16, 16, "dreamwire-spout", None, None)
        if not self.window:
            raise BridgeError("glfw could not create a hidden OpenGL window")

    def make_current(self) -> Release:
        self._glfw.make_context_current(self.window)
        return lambda: self._glfw.make_context_current(None)

    def destroy(self) -> None:
        """Destroy now on the main thread, else at the next main-thread GLFW call (or at exit)."""
        if self.window is None:
            return
        window, self.window = self.window, None
        with _glfw_lock:
            _doomed.append(window)
        if _on_main_thread():
            self._destroy_doomed()

    def _destroy_doomed(self) -> None:
        with _glfw_lock:
            windows = list(_doomed)
            _doomed.clear()
        for window in windows:
            self._glfw.destroy_window(window)
