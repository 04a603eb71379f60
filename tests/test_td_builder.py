"""The TouchDesigner network builder, run against a stand-in of the ``td`` module.

What is checked: the network it makes (operators, types, wiring, parameters,
ranges and defaults equal to the control schema), that a re-run updates in
place, and that every OSC message its callbacks would send is accepted by the
runtime's own OSC parser and validator (in process, and once over loopback UDP
to a running server), so the TouchDesigner side cannot drift from the schema.
"""

from __future__ import annotations

import importlib.util
import select
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dreamwire.control.commands import MAX_SECONDS, SCENE_MAX, SCENE_MIN
from dreamwire.control.kinds import Bool, Float, Int, Text
from dreamwire.control.schema import SPECS
from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.server import OscServer, OscSettings
from dreamwire.osc.wire import Message, build_bundle, build_message, parse_packet
from tests.conftest import wait_until
from tests.fakes.td import README, make_td, operator_parameters

BUILDER = Path(__file__).resolve().parents[1] / "td_project" / "dreamwire_builder.py"

STYLE_OF_KIND = {Text: ("Str", "s"), Float: ("Float", "f"), Int: ("Int", "i"), Bool: ("Toggle", "b")}
WIRE_TAG = {"s": "s", "f": "f", "i": "i", "b": "i"}  # toggles go out as int 0/1
REQUIRED = ("prompt", "negative_prompt", "strength", "steps", "guidance_scale", "delta", "seed",
            "similarity_filter", "pause", "bypass", "latent_feedback")

# The issue-11 contract for the scene addresses (the runtime implements them in parallel):
# /dreamwire/scene/save <n:i>; /dreamwire/scene/recall <n:i> [seconds:f] [unit:s]
SCENE_CONTRACT = {"/dreamwire/scene/save": ("i",), "/dreamwire/scene/recall": ("i", "if", "ifs")}


@pytest.fixture
def td(monkeypatch) -> ModuleType:
    module = make_td()
    monkeypatch.setitem(sys.modules, "td", module)
    return module


@pytest.fixture
def builder(td) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dreamwire_builder", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _handler() -> OscHandler:
    return OscHandler(ParamState(), dict)


def _names(comp) -> dict[str, str]:
    return {c.name: c.OPType for c in comp.children}


def _wired(src, dst) -> bool:
    return [c.owner for c in dst.inputConnectors[0].connections] == [src]


def _sent(comp) -> list[Message]:
    return [m for d in comp.op("oscout").sent for m in parse_packet(d)]


# --- the mapping table against the schema ----------------------------------------------------------------


def test_the_mapping_table_matches_the_control_schema(builder):
    controls = [c for c in builder.CONTROLS if c.osc]
    assert set(REQUIRED) <= {c.osc for c in controls}
    for c in controls:
        spec = SPECS[c.osc]  # a KeyError here: the builder names a parameter the schema lacks
        assert (c.style, c.tag) == STYLE_OF_KIND[type(spec.kind)], c.par
        assert c.address == f"/dreamwire/{spec.name}"
        assert c.default == pytest.approx(spec.default) if c.tag == "f" else c.default == spec.default, c.par
        if c.tag in "fi":
            assert (c.minimum, c.maximum) == (spec.kind.minimum, spec.kind.maximum), c.par
            assert spec.kind.minimum <= c.slider[0] < c.slider[1] <= spec.kind.maximum, c.par
    assert builder.MESSAGES == {c.par: (c.address, c.tag) for c in controls}


def test_the_readme_lists_exactly_the_operators_and_parameters_the_builder_sets(td, builder):
    builder.build(td.op("/project1"), transport="spout")
    builder.build(td.op("/project1"), transport="ndi", receive_name="PC (dreamwire)")
    listed = {(t, p) for t, pars in operator_parameters(README).items() for p in pars}
    listed |= {(t, "") for t in operator_parameters(README)}
    assert td.world.used == listed


def test_the_stand_in_rejects_unknown_operator_types_and_parameters(td):
    with pytest.raises(AttributeError):
        _ = td.noiseTOP
    with pytest.raises(TypeError):
        td.op("/project1").create("inTOP", "x")
    made = td.op("/project1").create(td.syphonspoutoutTOP, "s")
    with pytest.raises(AttributeError):
        made.par.sourcename = "x"  # the NDI/Spout name parameters are easy to mix up: only sendername exists
    page = td.op("/project1").create(td.baseCOMP, "b").appendCustomPage("P")
    with pytest.raises(ValueError):
        page.appendFloat("guidance_scale")  # not a valid custom parameter name in TouchDesigner


# --- the network -------------------------------------------------------------------------------------------


def test_builds_the_spout_network(td, builder):
    comp = builder.build(td.op("/project1"))
    assert comp.path == "/project1/dreamwire" and comp.OPType == "baseCOMP"
    assert _names(comp) == {
        "in1": "inTOP", "to_dreamwire": "syphonspoutoutTOP", "from_dreamwire": "syphonspoutinTOP",
        "out1": "outTOP", "oscout": "oscoutDAT", "controls": "parameterexecuteDAT", "info": "tableDAT",
        "telemetry_callbacks": "textDAT", "telemetry": "oscinDAT", "state": "tableDAT",
        "status_callbacks": "textDAT"}
    assert _wired(comp.op("in1"), comp.op("to_dreamwire"))
    assert _wired(comp.op("from_dreamwire"), comp.op("out1"))
    assert comp.op("to_dreamwire").par.sendername.eval() == "TDSyphonSpoutOut"
    assert comp.op("to_dreamwire").par.active.eval() is True
    assert comp.op("from_dreamwire").par.sendername.eval() == "dreamwire"
    out = comp.op("oscout")
    assert (out.par.address.eval(), out.par.port.eval(), out.par.active.eval()) == ("127.0.0.1", 7766, True)
    assert out.par.splitbundle.eval() is True and out.op(out.par.callbacks.eval()) is comp.op("status_callbacks")
    osc_in = comp.op("telemetry")
    assert osc_in.par.port.eval() == 7767 and osc_in.par.splitbundle.eval() is True
    assert osc_in.op(osc_in.par.callbacks.eval()) is comp.op("telemetry_callbacks")
    parexec = comp.op("controls")
    assert parexec.op(parexec.par.op.eval()) is comp
    assert parexec.par.pars.eval().split() == [c.par for c in builder.CONTROLS]
    assert [p.eval() for p in (parexec.par.custom, parexec.par.valuechange, parexec.par.onpulse)] == [True] * 3
    assert [r[0] for r in comp.op("info").rows] == ["fps", "latency_ms", "engine_ms", "health", "last_error"]


def test_the_control_page_has_the_schemas_ranges_and_defaults(td, builder):
    comp = builder.build(td.op("/project1"))
    (page,) = comp.customPages
    assert page.name == "Dreamwire"
    assert [p.name for p in page.pars] == [c.par for c in builder.CONTROLS]
    assert [p.label for p in page.pars][:10] == ["Prompt", "Negative prompt", "Strength", "Steps", "Guidance",
                                                 "Delta", "Seed", "Similarity filter", "Pause", "Bypass"]
    for c in builder.CONTROLS:
        par = comp.par[c.par]
        assert par.style == c.style
        if not c.osc:
            continue
        spec = SPECS[c.osc]
        assert par.default == spec.default and par.eval() == spec.default, c.par
        if c.tag in "fi":
            assert (par.min, par.max, par.clampMin, par.clampMax) == (spec.kind.minimum, spec.kind.maximum,
                                                                      True, True), c.par
    assert comp.par.Scene.clampMin and comp.par.Morphtime.clampMin and comp.par.Morphtime.eval() == 0.0
    scene, morph = comp.par.Scene, comp.par.Morphtime
    assert (scene.min, scene.max, scene.clampMax) == (SCENE_MIN, SCENE_MAX, True)
    assert (morph.min, morph.max, morph.clampMax) == (0.0, MAX_SECONDS, True)


def test_scene_numbers_and_morph_times_beyond_dreamwires_range_are_never_sent(td, builder):
    comp = builder.build(td.op("/project1"))
    comp.par.Scene = 5000
    comp.par.Morphtime = 99999.0
    comp.par.Recall.pulse()
    comp.par.Save.pulse()
    handler = _handler()
    handler.rig.scenes.save(SCENE_MAX, ParamState().params.as_dict())
    sent = [d for d in comp.op("oscout").sent if parse_packet(d)[0].address.startswith("/dreamwire/scene/")]
    assert [parse_packet(d)[0].args for d in sent] == [[SCENE_MAX, MAX_SECONDS], [SCENE_MAX]]
    assert [handler.handle(d).errors for d in sent] == [[], []]


def test_ndi_transport_and_switching_back_replaces_only_the_video_operators(td, builder):
    comp = builder.build(td.op("/project1"), transport="ndi", receive_name="STUDIO (dreamwire)")
    assert comp.op("to_dreamwire").OPType == "ndioutTOP" and comp.op("from_dreamwire").OPType == "ndiinTOP"
    assert comp.op("to_dreamwire").par.name.eval() == "TD out"
    assert comp.op("from_dreamwire").par.name.eval() == "STUDIO (dreamwire)"
    assert _wired(comp.op("in1"), comp.op("to_dreamwire")) and _wired(comp.op("from_dreamwire"), comp.op("out1"))
    oscout = comp.op("oscout")
    again = builder.build(td.op("/project1"), transport="spout")
    assert again is comp and comp.op("oscout") is oscout
    assert comp.op("to_dreamwire").OPType == "syphonspoutoutTOP"
    assert _wired(comp.op("in1"), comp.op("to_dreamwire")) and _wired(comp.op("from_dreamwire"), comp.op("out1"))
    assert len(comp.op("in1").outputConnectors[0].connections) == 1  # the NDI Out TOP's wire went with it
    with pytest.raises(ValueError):
        builder.build(td.op("/project1"), transport="syphon")


def test_a_rerun_updates_in_place_and_keeps_the_values(td, builder):
    comp = builder.build(td.op("/project1"))
    children = {c.name: c for c in comp.children}
    comp.par.Strength = 0.8
    comp.par.Prompt = "a forest"
    builder.build(td.op("/project1"), port=9000)
    builder.build(td.op("/project1"), port=9000)
    assert [c.name for c in td.op("/project1").children] == ["dreamwire"]
    assert {c.name: c for c in comp.children} == children  # the same operators, none added
    assert len(comp.customPages) == 1 and len(comp.customPages[0].pars) == len(builder.CONTROLS)
    assert comp.par.Strength.eval() == 0.8 and comp.par.Prompt.eval() == "a forest"
    assert comp.op("oscout").par.port.eval() == 9000
    assert len(comp.op("in1").outputConnectors[0].connections) == 1
    assert len(comp.op("out1").inputConnectors[0].connections) == 1
    assert comp.op("info").numRows == 5


def _pasted(td):
    dat = td.op("/project1").create(td.textDAT, "text1")
    dat.text = BUILDER.read_text(encoding="utf-8")
    td.me = dat  # what TouchDesigner sets while it runs a DAT's script, and may set while it compiles one
    return dat


def test_pasted_into_a_text_dat_run_script_builds_next_to_the_dat(td, builder):
    assert td.op("/project1/dreamwire") is None  # importing the builder builds nothing
    _pasted(td).run()
    assert td.op("/project1/dreamwire").op("to_dreamwire").OPType == "syphonspoutoutTOP"


def test_the_textport_recipe_builds_once_with_its_own_options(td, builder):
    """``op('text1').module.build(...)``: compiling the module builds nothing, even with ``me`` the DAT."""
    mod = _pasted(td).module
    assert td.op("/project1/dreamwire") is None
    comp = mod.build(td.op("/project1"), transport="ndi", receive_name="STUDIO (dreamwire)", port=9000)
    assert ("syphonspoutoutTOP", "") not in td.world.used  # no Spout build with the defaults first
    assert comp.op("to_dreamwire").OPType == "ndioutTOP" and comp.op("oscout").par.port.eval() == 9000


# --- the OSC the callbacks send ----------------------------------------------------------------------------

CHANGES = [  # (parameter, value set in TouchDesigner, value the runtime must end up with)
    ("Prompt", "a red fox in the snow", "a red fox in the snow"),
    ("Negativeprompt", "blurry, text", "blurry, text"),
    ("Strength", 0.75, 0.75),
    ("Strength", 5.0, 1.0),  # TouchDesigner clamps to the schema's range before anything is sent
    ("Steps", 3, 3),
    ("Steps", 8, 8),
    ("Guidance", 2.5, 2.5),
    ("Delta", 0.25, 0.25),
    ("Seed", 123456, 123456),
    ("Seed", 2**31 - 1, 2**31 - 1),
    ("Similarityfilter", True, True),
    ("Pause", True, True),
    ("Bypass", True, True),
    ("Bypass", False, False),
]


def test_every_change_sends_one_typed_message_the_runtime_accepts(td, builder):
    comp = builder.build(td.op("/project1"))
    handler = _handler()
    out = comp.op("oscout")
    for par, value, expected in CHANGES:
        before = len(out.sent)
        setattr(comp.par, par, value)
        assert len(out.sent) == before + 1, par
        (message,) = parse_packet(out.sent[-1])
        address, tag = builder.MESSAGES[par]
        assert (message.address, message.tags) == (address, WIRE_TAG[tag]), par
        outcome = handler.handle(out.sent[-1])
        assert outcome.errors == [] and outcome.applied, (par, outcome.errors)
        got = getattr(handler.state.params, address.rsplit("/", 1)[1])
        assert got == (pytest.approx(expected) if isinstance(expected, float) else expected), par
    comp.par.Scene = 4
    comp.par.Morphtime = 1.5
    assert len(out.sent) == len(CHANGES)  # scene number and morph time only matter to the pulses


def test_a_wrong_argument_type_would_be_caught(td, builder, monkeypatch):
    """The check above has teeth: a mapping that sent Steps as a string is rejected by the runtime."""
    monkeypatch.setitem(builder.MESSAGES, "Steps", ("/dreamwire/steps", "s"))
    comp = builder.build(td.op("/project1"))
    comp.par.Steps = 3
    outcome = _handler().handle(comp.op("oscout").sent[-1])
    assert outcome.errors and "steps" in outcome.errors[0][1]


def test_scene_pulses_follow_the_contract(td, builder):
    comp = builder.build(td.op("/project1"))
    comp.par.Scene = 3
    comp.par.Save.pulse()
    comp.par.Recall.pulse()
    comp.par.Morphtime = 2.5
    comp.par.Recall.pulse()
    got = [(m.address, m.tags, m.args) for m in _sent(comp) if m.address != "/dreamwire/status"]
    assert got == [("/dreamwire/scene/save", "i", [3]), ("/dreamwire/scene/recall", "i", [3]),
                   ("/dreamwire/scene/recall", "if", [3, 2.5])]
    for address, tags, _ in got:
        assert tags in SCENE_CONTRACT[address]


def test_changes_reach_a_running_server_over_loopback_udp(td, builder):
    osc = OscServer(ParamState(), dict, OscSettings(port=0, telemetry=None, tcp=False)).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        comp = builder.build(td.op("/project1"), port=osc.port)
        comp.par.Prompt = "neon koi"
        comp.par.Guidance = 3.0
        comp.par.Pause = True
        target = (comp.op("oscout").par.address.eval(), comp.op("oscout").par.port.eval())
        for dgram in comp.op("oscout").sent:  # the stand-in records; the datagrams are what TouchDesigner sends
            sock.sendto(dgram, target)
        wait_until(lambda: osc.state.params.pause, 5)
    finally:
        sock.close()
        osc.close()
    params = osc.state.params
    assert (params.prompt, params.guidance_scale, params.pause, osc.errors) == ("neon koi", 3.0, True, 0)


# --- telemetry into the info panel -------------------------------------------------------------------------


def test_telemetry_fills_the_info_panel(td, builder):
    comp = builder.build(td.op("/project1"))
    stats = {"fps": 29.97, "latency_ms": 41.25, "engine_ms": 12.5, "health_state": "degraded",
             "health_reason": "engine step stalled"}
    osc = OscServer(ParamState(), lambda: stats, OscSettings(port=0, telemetry=None))
    telemetry = comp.op("telemetry")
    telemetry.receive(osc.telemetry_datagram())  # the runtime's own bundle: stats, then health
    telemetry.receive(osc.handler.error_message("/dreamwire/strength", "strength: 5 is outside 0 .. 1"))
    info = {row[0]: row[1] for row in comp.op("info").rows}
    assert info == {"fps": "30.0", "latency_ms": "41.2", "engine_ms": "12.5",
                    "health": "degraded: engine step stalled",
                    "last_error": "/dreamwire/strength: strength: 5 is outside 0 .. 1"}


# --- status replies back onto the page ---------------------------------------------------------------------


class Wire:
    """Real UDP between the stand-in and a running OscServer: the OSC Out DAT's socket (where status replies
    come back) and the telemetry port, each datagram handed to its DAT as TouchDesigner would."""

    def __init__(self, comp) -> None:
        self.comp = comp
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.telemetry = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.telemetry.bind(("127.0.0.1", 0))
        self.forwarded = 0

    @property
    def telemetry_target(self) -> tuple[str, int]:
        return self.telemetry.getsockname()

    def pump(self, quiet: float = 0.3) -> None:
        """Send what the page sent, deliver what came back, until nothing moves for ``quiet`` seconds."""
        oscout = self.comp.op("oscout")
        target = (oscout.par.address.eval(), oscout.par.port.eval())
        while True:
            for dgram in oscout.sent[self.forwarded:]:
                self.out.sendto(dgram, target)
            self.forwarded = len(oscout.sent)
            ready, _, _ = select.select([self.out, self.telemetry], [], [], quiet)
            if not ready:
                return
            for sock in ready:
                dat = oscout if sock is self.out else self.comp.op("telemetry")
                dat.receive(sock.recv(65535))

    def close(self) -> None:
        self.out.close()
        self.telemetry.close()


def _addresses(dgrams) -> list[str]:
    return [m.address for d in dgrams for m in parse_packet(d)]


def test_a_scene_recall_elsewhere_shows_on_the_page_and_nothing_echoes_back(td, builder):
    osc = OscServer(ParamState(), lambda: {"fps": 30.0}, OscSettings(port=0, telemetry=None, tcp=False)).start()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a cue player, another desk
    comp = builder.build(td.op("/project1"), port=osc.port)
    wire = Wire(comp)
    osc.reports.target = wire.telemetry_target  # known only once the page is built
    try:
        other.sendto(build_bundle([build_message("/dreamwire/strength", [0.33]),
                                   build_message("/dreamwire/prompt", ["a harbour at dusk"]),
                                   build_message("/dreamwire/steps", [3]),
                                   build_message("/dreamwire/pause", [1])]), ("127.0.0.1", osc.port))
        other.sendto(build_message("/dreamwire/scene/save", [1]), ("127.0.0.1", osc.port))
        wait_until(lambda: osc.handler.rig.scenes.get(1) is not None, 5)
        comp.par.Strength = 0.85
        comp.par.Prompt = "a forest"
        wire.pump()
        assert (osc.state.params.strength, osc.state.params.prompt) == (pytest.approx(0.85), "a forest")
        other.sendto(build_message("/dreamwire/scene/recall", [1]), ("127.0.0.1", osc.port))
        wait_until(lambda: osc.state.params.prompt == "a harbour at dusk", 5)
        td.absTime.advance(builder.HOLD_SECONDS + 1)
        assert comp.par.Strength.eval() == 0.85  # nothing has told the page yet
        mark = len(comp.op("oscout").sent)
        osc.send_telemetry()  # the once-a-second push
        wire.pump()
        shown = (comp.par.Strength.eval(), comp.par.Prompt.eval(), comp.par.Steps.eval(), comp.par.Pause.eval())
        assert shown == (pytest.approx(0.33), "a harbour at dusk", 3, True)
        assert _addresses(comp.op("oscout").sent[mark:]) == ["/dreamwire/status"]  # no value went back
        comp.par.Strength = 0.85  # typing the old value now is a change again, and it goes out
        wire.pump()
        assert osc.state.params.strength == pytest.approx(0.85) and osc.errors == 0
    finally:
        wire.close()
        other.close()
        osc.close()


def test_a_recall_from_the_page_asks_for_the_scenes_values(td, builder):
    comp = builder.build(td.op("/project1"))
    comp.par.Scene = 2
    comp.par.Recall.pulse()
    assert _addresses(comp.op("oscout").sent) == ["/dreamwire/scene/recall", "/dreamwire/status"]


def _reply(**values) -> bytes:
    state = ParamState()
    state.apply(values)
    return OscServer(state, dict, OscSettings(port=0, telemetry=None)).status_datagrams()[0]


def test_a_reply_older_than_the_pages_own_change_does_not_undo_it(td, builder):
    comp = builder.build(td.op("/project1"))
    oscout = comp.op("oscout")
    comp.par.Strength = 0.6
    sent = len(oscout.sent)
    oscout.receive(_reply(strength=0.33, seed=77))  # asked for before 0.6 arrived
    assert comp.par.Strength.eval() == 0.6 and comp.par.Seed.eval() == 77  # the untouched seed follows
    td.absTime.advance(builder.HOLD_SECONDS + 0.1)
    oscout.receive(_reply(strength=0.33, seed=77))
    assert comp.par.Strength.eval() == pytest.approx(0.33) and len(oscout.sent) == sent


def test_every_replied_value_sets_its_control_without_a_message(td, builder):
    comp = builder.build(td.op("/project1"))
    values = {"prompt": "neon koi", "negative_prompt": "text", "strength": 0.25, "steps": 4, "guidance_scale": 3.5,
              "delta": 0.5, "seed": 2**31 - 1, "similarity_filter": True, "pause": True, "bypass": True,
              "latent_feedback": 0.15}
    assert set(values) == set(builder.FEEDBACK)
    comp.op("oscout").receive(_reply(**values))
    for name, (par, _) in builder.FEEDBACK.items():
        assert comp.par[par].eval() == pytest.approx(values[name]), name
    assert comp.op("oscout").sent == []
