"""dreamwire network builder: run me.

Build (or update) the ``dreamwire`` Base COMP in TouchDesigner: video out and back, a control page, telemetry.

Paste this file into a Text DAT and pick *Run Script* (right-click the DAT), or
from the Textport run ``op('/project1/text1').run()``: that builds with the
defaults (Spout, port 7766). The COMP appears next to the DAT, in its parent
network. Run it again at any time: the COMP is updated in place, the values you
dialled in are kept, and nothing is duplicated. To pick NDI instead of Spout, or
other names and ports, call ``build()`` from the Textport, for example::

    mod = op('/project1/text1').module
    mod.build(op('/project1'), transport='ndi', receive_name='STUDIO-PC (dreamwire)')

Building happens only then: on *Run Script* / ``run()`` (which give the script a
local ``args`` tuple) or on your own ``build(...)`` call. Reading ``.module`` (or
importing this file anywhere else) builds nothing, so the recipe above builds
once, with your options, and never first with the defaults.

Everything here is TouchDesigner's documented Python API (``COMP.create``,
``appendCustomPage``, ``Page.append*``, Par attributes, ``Connector.connect``,
the Parameter Execute and OSC In DAT callbacks, ``oscoutDAT.sendOSC``); the
README next to this file lists each operator type and parameter with the page
that documents it.

Why one table (:data:`CONTROLS`): every control's TouchDesigner parameter, its
range and default, and the OSC address and argument type it sends are declared
once. The Parameter Execute DAT's script is generated from it, and the tests
check it against dreamwire's control schema, so the two cannot drift apart.
"""

from __future__ import annotations

import socket
from typing import Any, NamedTuple

import td

PREFIX = "/dreamwire"
COMP_NAME = "dreamwire"
PAGE_NAME = "Dreamwire"
TRANSPORTS = ("spout", "ndi")
SEND_NAMES = {"spout": "TDSyphonSpoutOut", "ndi": "TD out"}
"""What TouchDesigner publishes: dreamwire reads it with ``--source spout:NAME`` / ``--source "ndi:NAME"``."""
SEED_MAX = 2**31 - 1
SCENE_MIN, SCENE_MAX = 0, 999
"""dreamwire's scene numbers. TouchDesigner's Python has no dreamwire to import, so they are written here and
tests/test_td_builder.py keeps them equal to ``dreamwire.control.commands`` (as the other ranges)."""
MORPH_SECONDS_MAX = 3600.0
"""The longest recall morph dreamwire takes, in seconds (``commands.MAX_SECONDS``, checked the same way)."""
HOLD_SECONDS = 2.0
"""After a change on the page, status replies leave that parameter alone this long: a reply to a request
sent before the change arrived (or while a quantized change waits for its beat) would undo it on screen."""

SCENE_SAVE = PREFIX + "/scene/save"
SCENE_RECALL = PREFIX + "/scene/recall"
STATUS = PREFIX + "/status"


class Control(NamedTuple):
    """One custom parameter and the OSC message a change of it sends.

    ``tag`` is the OSC type its value goes out as: ``s`` string, ``f`` float,
    ``i`` int, ``b`` a toggle sent as int 0/1 (dreamwire's booleans take 0/1 or
    T/F; every OSC tool reads ints). ``osc`` is the schema parameter it sets, or
    ``None`` for controls used only by the scene pulses. (A NamedTuple, not a
    dataclass: TouchDesigner runs a DAT's script under a module name that is not in
    ``sys.modules``, which dataclasses need.)
    """

    par: str
    label: str
    style: str  # Str, Float, Int, Toggle or Pulse: the Page.append* method that makes it
    osc: str | None
    tag: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    slider: tuple[float, float] | None = None  # normMin, normMax: the slider's range inside min..max

    @property
    def address(self) -> str | None:
        return f"{PREFIX}/{self.osc}" if self.osc else None


CONTROLS: tuple[Control, ...] = (
    Control("Prompt", "Prompt", "Str", "prompt", "s", "an oil painting of a city at night, vivid colors"),
    Control("Negativeprompt", "Negative prompt", "Str", "negative_prompt", "s", "low quality, blurry, watermark"),
    Control("Strength", "Strength", "Float", "strength", "f", 0.4, 0.0, 1.0, (0.0, 1.0)),
    Control("Steps", "Steps", "Int", "steps", "i", 2, 1, 8, (1, 8)),
    Control("Guidance", "Guidance", "Float", "guidance_scale", "f", 1.2, 0.0, 20.0, (0.0, 5.0)),
    Control("Delta", "Delta", "Float", "delta", "f", 1.0, 0.0, 1.0, (0.0, 1.0)),
    Control("Seed", "Seed", "Int", "seed", "i", 2, 0, SEED_MAX, (0, 1000)),
    Control("Similarityfilter", "Similarity filter", "Toggle", "similarity_filter", "b", False),
    Control("Pause", "Pause", "Toggle", "pause", "b", False),
    Control("Bypass", "Bypass", "Toggle", "bypass", "b", False),
    Control("Latentfeedback", "Latent feedback", "Float", "latent_feedback", "f", 0.0, 0.0, 1.0, (0.0, 0.4)),
    Control("Scene", "Scene number", "Int", None, "i", 1, SCENE_MIN, SCENE_MAX, (0, 16)),
    Control("Recall", "Recall scene", "Pulse", None, ""),
    Control("Save", "Save scene", "Pulse", None, ""),
    Control("Morphtime", "Morph time (s)", "Float", None, "f", 0.0, 0.0, MORPH_SECONDS_MAX, (0.0, 10.0)),
)

MESSAGES = {c.par: (c.address, c.tag) for c in CONTROLS if c.address}
"""Custom parameter -> (OSC address, argument type): what the Parameter Execute DAT sends on a change."""

FEEDBACK = {c.osc: (c.par, c.tag) for c in CONTROLS if c.osc}
"""Schema parameter -> (custom parameter, type): which ``/dreamwire/state/<name>`` reply sets which control."""

INFO_ROWS = ("fps", "latency_ms", "engine_ms", "health", "last_error")
STATS_SHOWN = ("fps", "latency_ms", "engine_ms")

TYPED = '''

def _typed(tag, value):
    if tag == "s":
        return str(value)
    if tag == "f":
        return float(value)
    if tag == "b":
        return 1 if value else 0
    return int(round(value))
'''
"""One conversion for what the page sends and what a reply says, so the two compare equal."""

PAREXEC_SCRIPT = '''"""Generated by dreamwire_builder.py: re-run the builder rather than editing this DAT.

Each change of a control on the parent COMP's Dreamwire page sends one typed OSC
message through the OSC Out DAT "oscout"; Recall and Save send the scene messages.
A change to the value the "state" table says dreamwire already has is not sent: that
is how a value set from a status reply (status_callbacks) never echoes back.
"""

MESSAGES = {messages!r}
SCENE_SAVE = {save!r}
SCENE_RECALL = {recall!r}
STATUS = {status!r}
{typed}

def _send(address, args):
    me.parent().op("oscout").sendOSC(address, args, asBundle=False, useNonStandardTypes=False)


def onValueChange(par, prev):
    message = MESSAGES.get(par.name)
    if message is None:
        return
    address, tag = message
    value = _typed(tag, par.eval())
    state = me.parent().op("state")
    if state[par.name, 1].val == repr(value):
        return  # dreamwire has it: it came from a reply, or was sent already
    _send(address, [value])
    state[par.name, 1].val = repr(value)
    state[par.name, 2].val = repr(absTime.seconds)
    return


def onPulse(par):
    owner = par.owner
    scene = int(owner.par.Scene.eval())
    if par.name == "Save":
        _send(SCENE_SAVE, [scene])
    elif par.name == "Recall":
        seconds = float(owner.par.Morphtime.eval())
        _send(SCENE_RECALL, [scene, seconds] if seconds > 0 else [scene])
        _send(STATUS, [])  # show the scene's values now, not at the next telemetry push
    return
'''

STATUS_SCRIPT = '''"""Generated by dreamwire_builder.py: dreamwire's status replies back onto the Dreamwire page.

dreamwire answers /dreamwire/status to the socket that asked, which is the OSC Out DAT
"oscout" (asked by telemetry_callbacks at every telemetry push, and after a recall);
its Callbacks DAT is this one. Each /dreamwire/state/<name> sets its control, unless
the page changed it in the last HOLD seconds. The value goes into the "state" table
first, so the Parameter Execute DAT sees it is dreamwire's own and does not send it back.
"""

PREFIX = {prefix!r}
FEEDBACK = {feedback!r}
HOLD = {hold!r}
{typed}

def onReceiveOSC(dat, rowIndex, message, bytes, timeStamp, address, args, peer):
    entry = FEEDBACK.get(address[len(PREFIX) + 7:]) if address.startswith(PREFIX + "/state/") else None
    if entry is None or not args:
        return
    name, tag = entry
    comp = me.parent()
    state = comp.op("state")
    changed = state[name, 2].val
    if changed and absTime.seconds - float(changed) < HOLD:
        return  # the page's own change may not have landed yet
    value = _typed(tag, args[0])
    state[name, 1].val = repr(value)
    par = comp.par[name]
    if _typed(tag, par.eval()) != value:
        par.val = value
    return
'''

TELEMETRY_SCRIPT = '''"""Generated by dreamwire_builder.py: dreamwire's telemetry into the "info" table.

dreamwire sends /dreamwire/stats/<name> f about once a second (a bundle, split into
messages by the OSC In DAT), /dreamwire/health s s, and /dreamwire/error s s for
every message it rejected. Each push ends with /dreamwire/health: then this asks for
/dreamwire/status through "oscout", whose reply updates the Dreamwire page.
"""

PREFIX = {prefix!r}
SHOWN = {shown!r}


def _show(name, text):
    me.parent().op("info")[name, 1].val = text


def onReceiveOSC(dat, rowIndex, message, bytes, timeStamp, address, args, peer):
    if address.startswith(PREFIX + "/stats/"):
        name = address[len(PREFIX) + 7:]
        if name in SHOWN and args:
            _show(name, "{{:.1f}}".format(float(args[0])))
    elif address == PREFIX + "/health" and args:
        reason = str(args[1]) if len(args) > 1 else ""
        _show("health", str(args[0]) + (": " + reason if reason else ""))
        me.parent().op("oscout").sendOSC(PREFIX + "/status", [], asBundle=False, useNonStandardTypes=False)
    elif address == PREFIX + "/error":
        _show("last_error", ": ".join(str(a) for a in args))
    return
'''


def parexec_script() -> str:
    """The Parameter Execute DAT's callbacks, with :data:`MESSAGES` written in as a literal."""
    return PAREXEC_SCRIPT.format(messages=MESSAGES, save=SCENE_SAVE, recall=SCENE_RECALL, status=STATUS,
                                 typed=TYPED)


def status_script() -> str:
    """The OSC Out DAT's callbacks: status replies onto the page, with :data:`FEEDBACK` written in."""
    return STATUS_SCRIPT.format(prefix=PREFIX, feedback=FEEDBACK, hold=HOLD_SECONDS, typed=TYPED)


def telemetry_script() -> str:
    return TELEMETRY_SCRIPT.format(prefix=PREFIX, shown=STATS_SHOWN)


def default_receive_name(transport: str) -> str:
    """What dreamwire publishes with ``--sink spout:dreamwire`` / ``--sink ndi:dreamwire``.

    NDI names a source ``MACHINE (stream)``; this guesses the machine name from
    the host name, which is what NDI shows on most set-ups (pick the right one
    from the NDI In TOP's menu if it differs).
    """
    if transport == "ndi":
        return f"{socket.gethostname().split('.')[0].upper()} (dreamwire)"
    return "dreamwire"


def build(parent: Any = None, transport: str = "spout", send_name: str | None = None,
          receive_name: str | None = None, host: str = "127.0.0.1", port: int = 7766,
          telemetry_port: int = 7767) -> Any:
    """Create or update ``<parent>/dreamwire`` and return it.

    ``transport`` is ``"spout"`` (Windows: Syphon Spout Out/In TOPs) or ``"ndi"``
    (NDI Out/In TOPs, any platform). Switching transport on a re-run replaces the
    two video operators; everything else is updated in place.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    parent = parent if parent is not None else _default_parent()
    send_name = send_name or SEND_NAMES[transport]
    receive_name = receive_name or default_receive_name(transport)
    comp = _child(parent, "baseCOMP", COMP_NAME, 0, 0)
    _control_page(comp)
    _video(comp, transport, send_name, receive_name)
    _osc_out(comp, host, port)
    _telemetry(comp, telemetry_port)
    return comp


# --- the parts ----------------------------------------------------------------------------------------


def _control_page(comp: Any) -> None:
    page = next((p for p in comp.customPages if p.name == PAGE_NAME), None) or comp.appendCustomPage(PAGE_NAME)
    for c in CONTROLS:
        existing = comp.par[c.par]
        kept = existing.eval() if existing is not None and c.style != "Pulse" else None
        par = getattr(page, "append" + c.style)(c.par, label=c.label, replace=True)[0]
        if c.minimum is not None:
            par.min, par.clampMin = c.minimum, True
        if c.maximum is not None:
            par.max, par.clampMax = c.maximum, True
        if c.slider is not None:
            par.normMin, par.normMax = c.slider
        if c.default is not None:
            par.default = c.default
            par.val = c.default if kept is None else kept


def _video(comp: Any, transport: str, send_name: str, receive_name: str) -> None:
    """in1 -> (Spout|NDI) out to dreamwire; (Spout|NDI) in from dreamwire -> out1."""
    source = _child(comp, "inTOP", "in1", 0, 200)
    if transport == "spout":
        send = _child(comp, "syphonspoutoutTOP", "to_dreamwire", 200, 200)
        send.par.sendername = send_name
        receive = _child(comp, "syphonspoutinTOP", "from_dreamwire", 0, 0)
        receive.par.sendername = receive_name
    else:
        send = _child(comp, "ndioutTOP", "to_dreamwire", 200, 200)
        send.par.name = send_name
        receive = _child(comp, "ndiinTOP", "from_dreamwire", 0, 0)
        receive.par.name = receive_name
    send.par.active = True
    result = _child(comp, "outTOP", "out1", 200, 0)
    source.outputConnectors[0].connect(send.inputConnectors[0])
    receive.outputConnectors[0].connect(result.inputConnectors[0])


def _osc_out(comp: Any, host: str, port: int) -> None:
    state = _child(comp, "tableDAT", "state", 400, 400)
    state.clear()
    for c in CONTROLS:
        if c.osc:
            state.appendRow([c.par, "", ""])  # control, dreamwire's value (repr; "" = not known), page change time
    replies = _child(comp, "textDAT", "status_callbacks", 600, 400)
    replies.text = status_script()
    out = _child(comp, "oscoutDAT", "oscout", 400, 200)
    out.par.address = host
    out.par.port = port
    out.par.splitbundle = True  # a status reply is one bundle
    out.par.callbacks = replies.name
    out.par.active = True
    parexec = _child(comp, "parameterexecuteDAT", "controls", 600, 200)
    parexec.text = parexec_script()
    parexec.par.op = ".."
    parexec.par.pars = " ".join(c.par for c in CONTROLS)
    parexec.par.custom = True
    parexec.par.builtin = False
    parexec.par.valuechange = True
    parexec.par.onpulse = True
    parexec.par.active = True


def _telemetry(comp: Any, telemetry_port: int) -> None:
    info = _child(comp, "tableDAT", "info", 400, 0)
    info.clear()
    for row in INFO_ROWS:
        info.appendRow([row, "-"])
    callbacks = _child(comp, "textDAT", "telemetry_callbacks", 600, -150)
    callbacks.text = telemetry_script()
    osc_in = _child(comp, "oscinDAT", "telemetry", 600, 0)
    osc_in.par.port = telemetry_port
    osc_in.par.splitbundle = True
    osc_in.par.callbacks = callbacks.name
    osc_in.par.active = True


def _child(parent: Any, type_name: str, name: str, x: int, y: int) -> Any:
    """``parent``'s operator ``name`` of type ``type_name``: the existing one, else a new one (a re-run never
    duplicates); one of another type (a transport switch) is replaced."""
    existing = parent.op(name)
    if existing is not None and existing.OPType == type_name:
        return existing
    if existing is not None:
        existing.destroy()
    made = parent.create(getattr(td, type_name), name)
    made.nodeX, made.nodeY = x, y
    return made


def _default_parent() -> Any:
    """Next to the DAT this script runs in; ``/project1`` from the Textport."""
    here = getattr(td, "me", None)
    network = here.parent() if here is not None else None
    return network if network is not None else td.op("/project1")


def _ran_by_run_script(namespace_args: Any) -> bool:
    """True under *Run Script* (``DAT.run()``), which gives the script "a local tuple named args" (DAT Class,
    ``run``). Compiling the DAT as a module (``op('text1').module``, the Textport recipe) defines no ``args``,
    whatever ``me`` is then, so calling :func:`build` yourself builds exactly once, with your options."""
    return isinstance(namespace_args, tuple)


try:
    _ARGS = args  # type: ignore[name-defined]  # defined by DAT.run() only
except NameError:
    _ARGS = None

if _ran_by_run_script(_ARGS):
    build()
