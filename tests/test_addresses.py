"""Every OSC address our tool-side assets use is one the runtime documents (and so accepts or sends).

The TouchDesigner builder, the Unity/Unreal scripts and the VJ examples are written by hand in
other languages, so nothing but this check stops them drifting from docs/osc.md, which is
generated from the control schema and the VJ command table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# An address starts at "/dreamwire/" not preceded by a path or word character (so a TouchDesigner
# operator path such as /project1/dreamwire/oscout is not one).
ADDRESS = re.compile(r"(?<![\w/])/dreamwire/[A-Za-z0-9_/<>]*[A-Za-z0-9_>]")
ASSET_DIRS = ("td_project", "examples")
SUFFIXES = {".py", ".cs", ".h", ".cpp", ".md", ".toml", ".txt", ".sh"}


def _documented() -> set[str]:
    return set(ADDRESS.findall((ROOT / "docs" / "osc.md").read_text(encoding="utf-8")))


def _used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for folder in ASSET_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES:
                for address in ADDRESS.findall(path.read_text(encoding="utf-8", errors="replace")):
                    used.setdefault(address, set()).add(str(path.relative_to(ROOT)))
    return used


def _known(address: str, documented: set[str]) -> bool:
    """Literal addresses must be documented; a ``<name>`` template must match some documented address."""
    if "<" not in address:
        return address in documented
    pattern = re.compile(re.sub(r"<[^>]*>", r"[A-Za-z0-9_]+", re.escape(address)) + "$")
    return address in documented or any(pattern.match(d) for d in documented)


def test_the_assets_use_osc_addresses():
    used = _used()
    # The check is only worth something if it sees the assets' traffic: prompt and status at least.
    assert {"/dreamwire/prompt", "/dreamwire/status"} <= set(used), sorted(used)


def test_the_unity_and_unreal_sources_are_among_the_scanned_assets():
    # C# and C++ are hand-written OSC senders too: the check below must see the addresses they spell out
    scanned = {f for files in _used().values() for f in files}
    assert {"examples/unity/DreamwireOsc.cs", "examples/unreal/DreamwireComponent.h",
            "examples/unreal/DreamwireComponent.cpp"} <= scanned
    # DreamwireControl.cs takes every address from DreamwireAddress (in DreamwireOsc.cs, scanned above);
    # its packets are also validated against the schema in tests/test_unity_control.py
    control = (ROOT / "examples" / "unity" / "DreamwireControl.cs").read_text(encoding="utf-8")
    assert "DreamwireAddress." in control and '"/dreamwire/' not in control


def test_every_address_in_the_assets_is_in_the_osc_docs():
    documented = _documented()
    unknown = {a: sorted(files) for a, files in _used().items() if not _known(a, documented)}
    assert not unknown, f"addresses used but not in docs/osc.md: {unknown}"


@pytest.mark.parametrize("address", ["/dreamwire/strenght", "/dreamwire/scene/load", "/dreamwire/stats/nope"])
def test_a_misspelt_address_would_be_caught(address):
    assert not _known(address, _documented())


def test_every_live_parameter_reaches_unity_and_unreal():
    """Lists included (blends, t_index_list, the ControlNet lists): each schema parameter has a Unity field
    (through a DreamwireAddress constant) and an Unreal setter that spells out its address."""
    from dreamwire.control.schema import SCHEMA

    osc = (ROOT / "examples" / "unity" / "DreamwireOsc.cs").read_text(encoding="utf-8")
    control = (ROOT / "examples" / "unity" / "DreamwireControl.cs").read_text(encoding="utf-8")
    unreal = (ROOT / "examples" / "unreal" / "DreamwireComponent.cpp").read_text(encoding="utf-8")
    constants = dict(re.findall(r'public const string (\w+) = "(/dreamwire/[a-z_]+)";', osc))
    used = {constants[name] for name in re.findall(r"DreamwireAddress\.(\w+)", control) if name in constants}
    for spec in SCHEMA:
        address = f"/dreamwire/{spec.name}"
        assert address in used, f"Unity has no field for {spec.name}"
        assert f'TEXT("{address}")' in unreal, f"Unreal has no setter for {spec.name}"
