"""Whole-or-nothing writes on a target another program holds (Windows), and stale temp files of killed writers."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dreamwire import files
from dreamwire.files import TargetHeldError, atomic_write, remove_stale_temps, temp_name
from dreamwire.osc.scenes import SceneStore


class HeldTarget:
    """``os.replace`` refused ``refusals`` times onto the target (as Windows does while a scanner has it open)."""

    def __init__(self, monkeypatch, target: Path, refusals: float) -> None:
        self.refusals, self.tries, self.slept = refusals, 0, []
        real = os.replace

        def replace(src, dst):
            if Path(dst) == target:
                self.tries += 1
                if self.tries <= self.refusals:
                    raise PermissionError(errno.EACCES, "The process cannot access the file because it is "
                                                        "being used by another process", str(dst))
            real(src, dst)

        monkeypatch.setattr(files.os, "replace", replace)
        monkeypatch.setattr(files, "REPLACE_RETRY_SECONDS", 1.0)  # what Windows gets
        monkeypatch.setattr(files, "_sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds / 100)  # a tenth of the pauses' real time: the clock still moves, the test stays short


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("refusals", [1, 3])
def test_a_briefly_held_target_is_replaced_after_retrying(tmp_path, monkeypatch, refusals):
    target = tmp_path / "scenes.toml"
    target.write_bytes(b"old")
    held = HeldTarget(monkeypatch, target, refusals)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert held.tries == refusals + 1
    assert held.slept == sorted(held.slept) and len(held.slept) == refusals, "doubling pauses, one per refusal"
    assert leftovers(tmp_path) == ["scenes.toml"], "no temp file left"


def test_a_target_held_for_good_fails_loudly_and_loses_nothing(tmp_path, monkeypatch):
    target = tmp_path / "scenes.toml"
    target.write_bytes(b"old")
    clock = [0.0]
    monkeypatch.setattr(files, "_clock", lambda: clock[0])
    held = HeldTarget(monkeypatch, target, float("inf"))
    monkeypatch.setattr(files, "_sleep", lambda s: (held.slept.append(s), clock.__setitem__(0, clock[0] + s)))
    with pytest.raises(PermissionError, match=r"held by another program.*old file is unchanged.*scenes\.toml\.unsaved"
                       ) as caught:
        atomic_write(target, b"new")
    assert 1.0 - 1e-9 <= sum(held.slept) <= 1.0 + 1e-9, "retried for the stated second, not longer"
    assert 5 <= held.tries <= 12
    assert target.read_bytes() == b"old"
    assert isinstance(caught.value, TargetHeldError) and caught.value.kept.read_bytes() == b"new"
    assert leftovers(tmp_path) == ["scenes.toml", "scenes.toml.unsaved"]


def test_a_scene_save_onto_a_held_file_says_where_the_scenes_went(tmp_path, monkeypatch):
    path = tmp_path / "scenes.toml"
    store = SceneStore(path)
    store.save(1, {"strength": 0.5})
    HeldTarget(monkeypatch, path, float("inf"))
    monkeypatch.setattr(files, "REPLACE_RETRY_SECONDS", 0.05)
    with pytest.raises(ValueError, match=r"scene 2 kept in memory.*held by another program.*scenes\.toml\.unsaved"):
        store.save(2, {"strength": 0.25})
    assert "[scenes.2]" in (tmp_path / "scenes.toml.unsaved").read_text()
    assert "[scenes.2]" not in path.read_text()


def test_posix_does_not_wait_on_a_permission_error(tmp_path, monkeypatch):
    target = tmp_path / "f"
    held = HeldTarget(monkeypatch, target, float("inf"))
    monkeypatch.setattr(files, "REPLACE_RETRY_SECONDS", 0.0)
    with pytest.raises(PermissionError):
        atomic_write(target, b"x")
    assert held.tries == 1 and held.slept == []


# --- stale temp files ------------------------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it (PIDs are not reused this fast)


def make_temp(folder: Path, name: str, pid: int, tid: int, age: float) -> Path:
    path = folder / f".{name}.{pid}.{tid}.tmp"
    path.write_bytes(b"partial")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_stale_temps_of_a_killed_writer_are_removed_and_no_others(tmp_path):
    gone = dead_pid()
    stale = make_temp(tmp_path, "scenes.toml", gone, 123, age=3600)
    other_target = make_temp(tmp_path, "other.toml", gone, 123, age=3600)
    live_writer = make_temp(tmp_path, "scenes.toml", os.getppid(), 7, age=3600)  # another running process
    just_written = make_temp(tmp_path, "scenes.toml", gone, 124, age=1)  # maybe a writer on another machine
    ours = make_temp(tmp_path, "scenes.toml", os.getpid(), threading.get_ident(), age=3600)  # this thread, now
    dead_thread = threading.Thread(target=lambda: None)
    dead_thread.start()
    dead_thread.join()
    our_old_thread = make_temp(tmp_path, "scenes.toml", os.getpid(), dead_thread.ident + 10**9, age=3600)
    (tmp_path / "scenes.toml").write_text("kept")
    (tmp_path / "scenes.toml.unsaved").write_text("kept too")

    assert sorted(remove_stale_temps(tmp_path / "scenes.toml")) == sorted([stale, our_old_thread])
    assert all(p.exists() for p in (other_target, live_writer, just_written, ours))
    assert (tmp_path / "scenes.toml").read_text() == "kept" and (tmp_path / "scenes.toml.unsaved").exists()


def test_opening_the_scenes_file_cleans_up_after_a_writer_killed_mid_save(tmp_path):
    path = tmp_path / "scenes.toml"
    SceneStore(path).save(3, {"strength": 0.5})
    stale = make_temp(tmp_path, "scenes.toml", dead_pid(), 1, age=3600)
    assert SceneStore.load(path).numbers() == [3]
    assert not stale.exists() and leftovers(tmp_path) == ["scenes.toml"]


def test_temp_names_hold_pid_and_thread(tmp_path):
    assert temp_name(tmp_path / "a.b").name == f".a.b.{os.getpid()}.{threading.get_ident()}.tmp"
