"""The package's shape: one import name, layers that only import downwards, short modules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FOLDERS = {"dreamwire": ROOT / "runtime", "dreamwire.bridges": ROOT / "bridges"}


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.skip("import-linter is not installed (it is in the [dev] extra)")
        return found
    return str(exe)


def test_only_dreamwire_is_importable_from_outside_the_checkout(tmp_path):
    code = ("import importlib, dreamwire, dreamwire.bridges.base, dreamwire.engine.stream\n"
            "for name in ('runtime', 'bridges'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    raise SystemExit(f'{name} is importable')\n"
            "print(dreamwire.__version__)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stdout.strip() == PYPROJECT["project"]["version"]


def test_the_console_script_is_the_dreamwire_command():
    exe = Path(sys.executable).with_name("dreamwire")
    if not exe.exists():
        pytest.skip("the dreamwire console script is not installed next to this interpreter")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"dreamwire {PYPROJECT['project']['version']}"


def _packages_on_disk() -> set[str]:
    found = set()
    for base, folder in FOLDERS.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((base, *rel)))
    return found


def test_every_package_folder_is_installed():
    """A subpackage missing from the explicit list would vanish from a non-editable install."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk()
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {k: v.name for k, v in FOLDERS.items()}


def _contract_layers() -> list[str]:
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["type"] == "layers")["layers"]


def test_layers_contract_matches_the_architecture_doc():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```")[1]
    drawn = re.findall(r"^\s*\w+\s+(dreamwire(?:\.\w+)?)\s", diagram, flags=re.M)
    assert drawn == _contract_layers()
    assert text.index("## Read these files in this order") < text.index("## Where things live")
    order = text.split("## Read these files in this order")[1].split("##")[0]
    files = re.findall(r"^\d+\. `([^`]+)`", order, flags=re.M)
    assert 2 <= len(files) <= 6 and files[0].startswith("bridges/") and files[-1].startswith("bridges/")
    assert any("engine" in f for f in files)
    for f in files:
        assert (ROOT / f).is_file(), f


def _staged_tree(tmp_path: Path) -> Path:
    """The package laid out as an install would lay it out, with this checkout's pyproject."""
    # runtime/bridges is the symlink that shows editable installs' import graph the bridges: skip it here
    shutil.copytree(ROOT / "runtime", tmp_path / "dreamwire", ignore=shutil.ignore_patterns("__pycache__", "bridges"))
    shutil.copytree(ROOT / "bridges", tmp_path / "dreamwire" / "bridges",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.slow
def test_an_upward_import_breaks_the_layers_contract_and_is_named(tmp_path):
    exe = _lint_imports()
    tree = _staged_tree(tmp_path)
    env = {"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent)}
    ok = subprocess.run([exe, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The engine reaching up into the live loop, as stream.py once reached into backends.
    (tree / "dreamwire" / "engine" / "upward.py").write_text("import dreamwire.live.loop\n", encoding="utf-8")
    bad = subprocess.run([exe, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "BROKEN" in bad.stdout and "dreamwire.engine.upward -> dreamwire.live.loop" in bad.stdout
