"""A fake ``SpoutGL`` module: SpoutGL 0.1.1 (pybind11 over Spout 2.007) at the API boundary dreamwire uses.

SpoutGL only ships Windows wheels, so on Linux the Spout bridge is tested
against this stand-in. It mirrors, from SpoutGL 0.1.1's ``src/PySpoutGL.cpp``
and Spout 2.007's ``Spout.cpp``:

* ``SpoutSender()``: ``setSenderName(name) -> None``;
  ``sendImage(buffer, width, height, glFormat, invert, hostFbo) -> bool``
  (width before height, although the binding's lambda names them the other way
  round); ``BufferError("Buffer not large enough")`` /
  ``BufferError("Buffer must be contiguous")``; ``ValueError`` for an unknown
  GL format; the first successful send registers the sender, and a taken name
  becomes ``name_1``, ``name_2`` ...; ``releaseSender() -> None``;
  ``createOpenGL() -> bool``; ``closeOpenGL() -> bool``; ``with`` releases.
* ``SpoutReceiver()``: ``setReceiverName(name) -> None`` (empty = the active
  sender); ``receiveImage(buffer | None, glFormat, invert, hostFbo) -> bool``:
  the binding checks a non-empty buffer against the *current*
  ``getSenderWidth/Height`` before Spout runs; Spout returns True without
  copying while a new sender or a size change is flagged, False for ``None``
  otherwise, and False (after releasing, width/height back to 0) when the
  sender is gone. ``isUpdated()`` returns the flag **and clears it**.
  ``getSenderName()`` is bound to ``GetSenderWidth`` in 0.1.1, so it returns
  the width (an int), never a name. ``isFrameNew()``, ``getSenderFrame()``,
  ``isConnected()``, ``releaseReceiver()``, ``createOpenGL``/``closeOpenGL``.
* ``SpoutGL.enums``: ``GL_RGBA``, ``GL_BGRA_EXT``, ``GL_RGB``, ``GL_BGR_EXT``;
  ``SpoutGL.helpers.getBytesPerPixel``.

Not mirrored: textures, FBOs, memory buffers, frame sync events, CPU-share
modes. 0.1.1 has no sender-list call; ``with_sender_list=True`` adds the later
``getSenderList()`` for the ``list_senders`` path. Without an OpenGL context
(``createOpenGL``), sending and receiving fail the way Spout's ``OpenSpout``
does: they return False.

Tests drive the "other application" through :class:`World`: ``publish`` a
frame as TouchDesigner would, ``close`` a sender, ``resize`` by publishing a
different size.
"""

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass, field

import numpy as np

GL_RGBA, GL_BGRA_EXT, GL_RGB, GL_BGR_EXT = 0x1908, 0x80E1, 0x1907, 0x80E0
_ORDER = {GL_RGBA: [0, 1, 2, 3], GL_BGRA_EXT: [2, 1, 0, 3], GL_RGB: [0, 1, 2], GL_BGR_EXT: [2, 1, 0]}


def get_bytes_per_pixel(gl_format: int) -> int:
    if gl_format not in _ORDER:
        raise ValueError("Unknown GL format")
    return len(_ORDER[gl_format])


def _view(buffer: object) -> memoryview:
    view = memoryview(buffer)  # type: ignore[arg-type]
    if not view.c_contiguous:
        raise BufferError("Buffer must be contiguous")
    return view


@dataclass
class SharedSender:
    """One entry of Spout's shared sender list: size, the texture as RGBA, a frame counter."""

    name: str
    rgba: np.ndarray
    frame: int = 0
    incarnation: int = 0
    frame_count: bool = True

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgba.shape[1]), int(self.rgba.shape[0])  # width, height, as Spout reports them


@dataclass
class World:
    """Spout's machine-wide state: the sender names map and the active sender."""

    senders: dict[str, SharedSender] = field(default_factory=dict)
    active: str | None = None
    _incarnations: itertools.count = field(default_factory=lambda: itertools.count(1))

    def register(self, wanted: str, rgba: np.ndarray, frame_count: bool = True) -> str:
        name, n = wanted, 0
        while name in self.senders:
            n += 1
            name = f"{wanted}_{n}"
        self.senders[name] = SharedSender(name, rgba, incarnation=next(self._incarnations), frame_count=frame_count)
        self.active = self.active or name
        return name

    def publish(self, name: str, rgba: np.ndarray, frame_count: bool = True) -> None:
        """Another application sends a frame (RGBA, any size) under ``name``."""
        rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
        sender = self.senders.get(name)
        if sender is None:
            self.register(name, rgba, frame_count)
            sender = self.senders[name]
        sender.rgba = rgba
        sender.frame += 1

    def close(self, name: str) -> None:
        self.senders.pop(name, None)
        if self.active == name:
            self.active = next(iter(self.senders), None)


class _GL:
    def __init__(self, world: World) -> None:
        self._world = world
        self.gl_ready = False

    def createOpenGL(self) -> bool:
        self.gl_ready = True
        return True

    def closeOpenGL(self) -> bool:
        self.gl_ready = False
        return True


class SpoutSender(_GL):
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
        if not self.gl_ready or width == 0 or height == 0:
            return False
        pixels = np.frombuffer(view, np.uint8, width * height * bpp).reshape(height, width, bpp)
        rgba = np.full((height, width, 4), 255, np.uint8)
        rgba[..., _ORDER[glFormat]] = pixels  # scatter into RGBA order
        if invert:
            rgba = rgba[::-1].copy()
        if self.name is None:
            self.name = self._world.register(self._wanted, rgba)
        self._world.publish(self.name, rgba)
        return True

    def releaseSender(self) -> None:
        if self.name is not None:
            self._world.close(self.name)
        self.name = None


class SpoutReceiver(_GL):
    def __init__(self, world: World, with_sender_list: bool = False) -> None:
        super().__init__(world)
        self._setup_name = ""
        self._connected: SharedSender | None = None
        self._incarnation = 0
        self._width = self._height = 0
        self._updated = False
        self._last_frame = -1
        self._frame_new = False
        self.calls: list[tuple] = []
        if with_sender_list:
            self.getSenderList = lambda: list(world.senders)  # type: ignore[attr-defined]

    def __enter__(self) -> SpoutReceiver:
        return self

    def __exit__(self, *_: object) -> None:
        self.releaseReceiver()

    def setReceiverName(self, name: str) -> None:
        self._setup_name = name or ""

    def receiveImage(self, buffer: object | None, glFormat: int, invert: bool, hostFbo: int) -> bool:
        self.calls.append(("receiveImage", None if buffer is None else "buffer", glFormat, invert, hostFbo))
        view = None if buffer is None else _view(buffer)
        if view is not None and view.nbytes:  # the binding's check uses the size Spout knew before this call
            if view.nbytes < self._width * self._height * get_bytes_per_pixel(glFormat):
                raise BufferError("Buffer not large enough")
        if not self.gl_ready:
            return False  # OpenSpout fails without an OpenGL context
        sender = self._world.senders.get(self._setup_name or (self._world.active or ""))
        if sender is None:
            self.releaseReceiver()
            return False
        if sender.incarnation != self._incarnation or sender.size != (self._width, self._height):
            self._connected, self._incarnation = sender, sender.incarnation
            self._width, self._height = sender.size
            self._updated = True
        if self._updated:
            return True  # the application must call isUpdated() and re-allocate
        if view is None or not view.nbytes:
            return False
        self._frame_new = not sender.frame_count or sender.frame != self._last_frame
        self._last_frame = sender.frame
        rgba = sender.rgba[::-1] if invert else sender.rgba
        bpp = get_bytes_per_pixel(glFormat)
        out = np.frombuffer(view.cast("B"), np.uint8, self._width * self._height * bpp)
        out[:] = rgba[..., _ORDER[glFormat]].reshape(-1)
        return True

    def isUpdated(self) -> bool:
        updated, self._updated = self._updated, False
        return updated

    def isConnected(self) -> bool:
        return self._connected is not None

    def isFrameNew(self) -> bool:
        return self._frame_new

    def getSenderFrame(self) -> int:
        return self._last_frame if self._connected is not None else 0

    def getSenderWidth(self) -> int:
        return self._width

    def getSenderHeight(self) -> int:
        return self._height

    def getSenderName(self) -> int:
        return self._width

    def releaseReceiver(self) -> None:
        self._connected = None
        self._incarnation = 0
        self._width = self._height = 0
        self._last_frame = -1
        self._frame_new = False


def make_spoutgl(with_sender_list: bool = False) -> types.ModuleType:
    """A fresh fake ``SpoutGL`` module with its own :class:`World` (``module.world``)."""
    world = World()
    module = types.ModuleType("SpoutGL")
    module.__version__ = "0.1.1-fake"  # type: ignore[attr-defined]
    module.world = world  # type: ignore[attr-defined]
    module.SpoutSender = lambda: SpoutSender(world)  # type: ignore[attr-defined]
    module.SpoutReceiver = lambda: SpoutReceiver(world, with_sender_list)  # type: ignore[attr-defined]
    enums = types.ModuleType("SpoutGL.enums")
    enums.GL_RGBA, enums.GL_BGRA_EXT, enums.GL_RGB, enums.GL_BGR_EXT = GL_RGBA, GL_BGRA_EXT, GL_RGB, GL_BGR_EXT  # type: ignore[attr-defined]
    helpers = types.ModuleType("SpoutGL.helpers")
    helpers.getBytesPerPixel = get_bytes_per_pixel  # type: ignore[attr-defined]
    module.enums, module.helpers = enums, helpers  # type: ignore[attr-defined]
    return module
