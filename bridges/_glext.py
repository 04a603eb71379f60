"""Whether the OpenGL context current on this thread lists an extension, asked the way Spout asks.

Spout reads ``GL_BGRA_EXT`` pixels only when the driver lists ``GL_EXT_bgra``;
otherwise it silently reads ``GL_RGBA`` into a buffer the caller asked to be
BGRA (``Spout.cpp:1847-1853`` in SpoutGL 0.1.1's vendored Spout 2.007), and
SpoutGL 0.1.1 binds nothing that tells (``IsBGRAavailable`` is not in
``PySpoutGL.cpp``; ``getSenderFormat`` is the *sender's* DXGI format). So the
Spout source repeats Spout's own test on the same context: Spout is built
without ``legacyOpenGL`` (``SpoutCommon.h:75``), so it walks
``glGetStringi(GL_EXTENSIONS, i)`` for ``i < GL_NUM_EXTENSIONS`` and looks for
an exact match (``SpoutGLextensions.cpp:695-705, 744-770``). Windows only
(``opengl32.dll``), like SpoutGL.
"""

from __future__ import annotations

import ctypes
import sys

GL_EXTENSIONS = 0x1F03
GL_NUM_EXTENSIONS = 0x821D


def gl_extensions() -> frozenset[str] | None:
    """The extensions of the context current on this thread, or None where that cannot be asked."""
    if sys.platform != "win32":
        return None  # no opengl32 here: only a stand-in SpoutGL can run, which says nothing about a driver
    gl = ctypes.WinDLL("opengl32")  # type: ignore[attr-defined]
    gl.wglGetProcAddress.restype = ctypes.c_void_p
    gl.wglGetProcAddress.argtypes = [ctypes.c_char_p]
    address = gl.wglGetProcAddress(b"glGetStringi")
    if not address:
        return frozenset()  # no glGetStringi (a GL 2.x context): Spout's test finds nothing either
    get_string_i = ctypes.WINFUNCTYPE(ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint)(address)
    count = ctypes.c_int(0)
    gl.glGetIntegerv.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_int)]
    gl.glGetIntegerv(GL_NUM_EXTENSIONS, ctypes.byref(count))
    names = (get_string_i(GL_EXTENSIONS, i) for i in range(max(0, count.value)))
    return frozenset(name.decode("ascii", "replace") for name in names if name)
