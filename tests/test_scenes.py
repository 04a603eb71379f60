"""Scenes: save -> restart (a new store from the file) -> recall restores every value; atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dreamwire import files as files_mod
from dreamwire.control.commands import SceneRecall, SceneSave
from dreamwire.control.params import Params
from dreamwire.control.schema import SCHEMA
from dreamwire.live.state import ParamState
from dreamwire.osc.rig import Rig
from dreamwire.osc.scenes import SceneFileError, SceneStore, parse_scenes, scenes_toml
from tests.fakes.clock import FakeClock

SHOW = {
    "prompt": 'a "quoted" city\nwith a tab\t and ünïcode ✨ and \x7f', "prompt_blend": (("a", 0.25), ("b", 0.75)),
    "negative_prompt": "blurry", "guidance_scale": 3.5, "delta": 0.25, "seed": 123456,
    "seed_blend": ((1, 0.5), (2, 1.5)),
    "strength": 0.65, "steps": 3, "t_index_list": (10, 20, 30), "similarity_filter": True,
    "similarity_threshold": 0.9, "similarity_max_skip": 4, "pause": False, "bypass": True, "quantize": "bar",
    "controlnet_scale": (0.5, 1.5), "controlnet_enabled": (True, False), "controlnet_start": (0.1, 0.0),
    "controlnet_end": (0.9, 1.0), "latent_feedback": 0.15,
}


def test_the_show_values_differ_from_every_default():
    assert set(SHOW) == {s.name for s in SCHEMA}
    assert all(SHOW[s.name] != s.default for s in SCHEMA if s.name != "pause")


def test_save_restart_recall_restores_every_value(tmp_path):
    path = tmp_path / "show" / "scenes.toml"
    state = ParamState(Params(SHOW))
    store = SceneStore.load(path)
    Rig(state, scenes=store).submit({}, [SceneSave(7)])
    assert store.flush()  # saves are written in the background (issue 18.26)
    assert path.exists()
    # a restart: a new store from the file, a fresh state at defaults
    fresh = ParamState()
    rig = Rig(fresh, scenes=SceneStore.load(path))
    assert rig.scenes.numbers() == [7]
    rig.submit({}, [SceneRecall(7)])
    assert fresh.params.as_dict() == Params(SHOW).as_dict()


def test_save_in_one_process_recall_in_another(tmp_path):
    path = tmp_path / "scenes.toml"
    code = ("import sys; from dreamwire.osc.scenes import SceneStore; from dreamwire.control.params import Params;"
            "SceneStore.load(sys.argv[1]).save(2, Params({'strength': 0.77, 'prompt': 'sub'}).as_dict())")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    state = ParamState()
    Rig(state, scenes=SceneStore.load(path)).submit({}, [SceneRecall(2)])
    assert state.params.strength == 0.77 and state.params.prompt == "sub"


def test_recall_with_time_morphs_numbers_and_prompt(tmp_path):
    clock = FakeClock()
    state = ParamState(Params({"strength": 0.2, "prompt": "x"}))
    store = SceneStore(scenes={1: Params({"strength": 0.6, "prompt": "y", "bypass": True}).as_dict()})
    rig = Rig(state, clock=clock, scenes=store)
    rig.submit({}, [SceneRecall(1, 2.0)])
    assert state.params.bypass is True  # not morphable: at once
    clock.t += 1.0
    rig.tick()
    assert state.params.strength == pytest.approx(0.4)  # ease at half-way is 0.5
    assert sum(w for _, w in state.params.prompt_blend) == pytest.approx(1.0)
    clock.t += 1.0
    rig.tick()
    assert state.params.as_dict() == store.get(1)


def _write_then_fail(tmp_path, monkeypatch, where: str):
    path = tmp_path / "scenes.toml"
    store = SceneStore.load(path)
    store.save(1, Params({"strength": 0.1}).as_dict())
    old = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_mod.os, where, boom)
    with pytest.raises(SceneFileError, match="kept in memory"):
        store.save(2, Params({"strength": 0.9}).as_dict())
    monkeypatch.undo()
    assert path.read_bytes() == old  # the old file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["scenes.toml"]  # no temp file left behind
    assert SceneStore.load(path).numbers() == [1]
    assert store.get(2) is not None  # still recallable in this run


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_a_killed_write_leaves_the_old_file_intact(tmp_path, monkeypatch, where):
    _write_then_fail(tmp_path, monkeypatch, where)


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path):
    """A real kill: the child blocks inside fsync of the temp file and is SIGKILLed there."""
    path = tmp_path / "scenes.toml"
    SceneStore.load(path).save(1, Params({"strength": 0.1}).as_dict())
    old = path.read_bytes()
    code = ("import os, sys, time; from dreamwire import files; from dreamwire.osc import scenes as s;"
            "from dreamwire.control.params import Params;"
            "files.os.fsync = lambda fd: (print('writing', flush=True), time.sleep(60));"
            "s.SceneStore.load(sys.argv[1]).save(2, Params({'strength': 0.9}).as_dict())")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=30)
    assert path.read_bytes() == old
    assert SceneStore.load(path).numbers() == [1]


def test_toml_round_trip_of_every_value():
    scenes = {3: Params(SHOW).as_dict(), 0: Params().as_dict()}
    assert parse_scenes(scenes_toml(scenes), "x") == scenes


@pytest.mark.parametrize(("text", "fragment"), [
    ("[scenes.1]\nstrength = 2.0\n", "outside"),
    ("[scenes.1]\nnope = 1\n", "unknown parameter"),
    ("[scenes.1000]\nstrength = 0.5\n", "0 .. 999"),
    ("other = 1\n", "unknown key"),
    ("[scenes.1\n", "not valid TOML"),
])
def test_a_bad_scenes_file_is_a_clear_error(tmp_path, text, fragment):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(SceneFileError, match=fragment) as exc:
        SceneStore.load(p)
    assert str(p) in str(exc.value)


def test_scenes_flag_and_toml_key(tmp_path):
    from dreamwire.app import cli

    cfg = cli.config_from_args(cli.build_parser().parse_args(["run", "--scenes", str(tmp_path / "a.toml")]))
    assert cfg.scenes == str(tmp_path / "a.toml")
    conf = tmp_path / "show.toml"
    conf.write_text(f'scenes = "{tmp_path / "b.toml"}"\nlink = false\n')
    cfg = cli.config_from_args(cli.build_parser().parse_args(["run", "--config", str(conf)]))
    assert cfg.scenes == str(tmp_path / "b.toml") and cfg.link is False


def test_unwritable_scene_file_error_reaches_osc(tmp_path):
    from dreamwire.osc.handler import OscHandler
    from dreamwire.osc.wire import build_message

    blocker = tmp_path / "file"
    blocker.write_text("")
    state = ParamState()
    h = OscHandler(state, lambda: {}, rig=Rig(state, scenes=SceneStore(blocker / "scenes.toml")))
    out = h.handle(build_message("/dreamwire/scene/save", [1]))
    assert len(out.errors) == 1 and "not written" in out.errors[0][1]
    assert os.listdir(tmp_path) == ["file"]


def test_scene_floats_are_written_as_the_shortest_float32_decimal(tmp_path):
    """Issue 18.6: an OSC float (float32) is written as 0.35, not 0.3499999940395355, and reads back equal
    as a float32."""
    import numpy as np

    from dreamwire.osc.handler import OscHandler
    from dreamwire.osc.wire import build_message

    path = tmp_path / "scenes.toml"
    state = ParamState()
    store = SceneStore.load(path)
    h = OscHandler(state, lambda: {}, rig=Rig(state, scenes=store))
    h.handle(build_message("/dreamwire/strength", [0.35]))
    h.handle(build_message("/dreamwire/guidance_scale", [1.2]))
    h.handle(build_message("/dreamwire/scene/save", [4]))
    store.flush()
    text = path.read_text()
    assert "strength = 0.35\n" in text and "guidance_scale = 1.2\n" in text
    back = SceneStore.load(path).get(4)
    assert np.float32(back["strength"]) == np.float32(state.params.strength)


def test_a_non_ascii_digit_scene_key_names_file_and_key(tmp_path):
    """Issue 18.32: [scenes."²"] passes str.isdigit() but is no scene number."""
    p = tmp_path / "s.toml"
    p.write_text('[scenes."²"]\nstrength = 0.5\n', encoding="utf-8")
    with pytest.raises(SceneFileError) as exc:
        SceneStore.load(p)
    assert str(p) in str(exc.value) and '"²"' in str(exc.value) and "0 .. 999" in str(exc.value)


def test_scenes_path_that_is_a_fifo_is_refused_at_once(tmp_path):
    """Issue 18.32: reading a FIFO would block the start forever."""
    import threading

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def load() -> None:
        try:
            SceneStore.load(fifo)
            result.append(None)
        except SceneFileError as exc:
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10.0)
    if t.is_alive():  # the old code blocks in open(): let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert result and "not a regular file" in str(result[0])


def test_a_scene_with_controlnet_start_not_below_end_is_a_clear_error(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[scenes.1]\ncontrolnet_start = [0.5]\ncontrolnet_end = [0.5]\n")
    with pytest.raises(SceneFileError, match=r"\[scenes.1\].*controlnet_start") as exc:
        SceneStore.load(p)
    assert str(p) in str(exc.value)


def test_a_bundle_with_a_save_that_cannot_be_written_changes_nothing(tmp_path):
    """Issue 18.31: [strength 0.77, scene/save 6] into a place that cannot hold the file is refused whole."""
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message import OscMessage

    from dreamwire.osc.handler import OscHandler
    from dreamwire.osc.wire import build_message

    blocker = tmp_path / "file"
    blocker.write_text("")
    state = ParamState()
    store = SceneStore(blocker / "scenes.toml")
    h = OscHandler(state, lambda: {}, rig=Rig(state, scenes=store))
    b = OscBundleBuilder(IMMEDIATELY)
    b.add_content(OscMessage(build_message("/dreamwire/strength", [0.77])))
    b.add_content(OscMessage(build_message("/dreamwire/scene/save", [6])))
    out = h.handle(b.build().dgram)
    assert out.errors and "not written" in out.errors[0][1] and not out.applied
    assert state.params.strength == pytest.approx(0.4) and store.numbers() == []


class _BlockedDisk:
    """files.os.fsync that blocks until released, counting the writes that reached it."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        self._fsync = os.fsync

    def __call__(self, fd):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        return self._fsync(fd)


def test_saves_never_wait_for_the_disk_and_the_newest_reaches_it(tmp_path, monkeypatch):
    """Issue 18.26: while the disk is stuck mid-write, 200 more saves (as OSC) return at once; they are
    coalesced and the file ends with the newest of them."""
    import threading

    from dreamwire.osc.handler import OscHandler
    from dreamwire.osc.wire import build_message

    path = tmp_path / "scenes.toml"
    state = ParamState()
    store = SceneStore.load(path)
    h = OscHandler(state, lambda: {}, rig=Rig(state, scenes=store))
    disk = _BlockedDisk()
    monkeypatch.setattr(files_mod.os, "fsync", disk)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(files_mod.os, "replace", lambda a, b: (replaced.append(b), real_replace(a, b)))
    h.handle(build_message("/dreamwire/scene/save", [0]))
    assert disk.entered.wait(10)  # the writer is stuck in fsync now
    done = threading.Event()

    def burst() -> None:
        for i in range(200):
            h.handle(build_message("/dreamwire/seed", [1000 + i]))
            h.handle(build_message("/dreamwire/scene/save", [i % 7]))
        done.set()

    threading.Thread(target=burst, daemon=True).start()
    assert done.wait(20), "a save waited for the disk"
    assert store.get(199 % 7)["seed"] == 1199
    disk.release.set()
    assert store.flush(30)
    assert SceneStore.load(path).get(199 % 7)["seed"] == 1199
    assert len(replaced) == 2  # the stuck write, then one for the whole burst
