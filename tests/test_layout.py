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


# --- the import graph --------------------------------------------------------------------------------------


def _graph():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the [dev] extra)")
    return grimp.build_graph("dreamwire", cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), function-local imports included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative, so a deep chain cannot hit the recursion limit
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_planted_cycle():
    graph = _graph()
    graph.add_import(importer="dreamwire.engine.schedule", imported="dreamwire.engine.stream")
    assert ["dreamwire.engine.schedule", "dreamwire.engine.stream"] in [
        [m for m in c if m in ("dreamwire.engine.schedule", "dreamwire.engine.stream")] for c in _cycles(graph)]


def test_the_control_side_sees_the_frame_side_only_through_its_state_and_stats():
    graph = _graph()
    seen = {imported for importer in graph.find_descendants("dreamwire.osc")
            for imported in graph.find_modules_directly_imported_by(importer) if imported.startswith("dreamwire.live.")}
    assert seen <= {"dreamwire.live.state", "dreamwire.live.telemetry"}, seen


# The finder an editable install adds (setuptools' __editable___*_finder.py): `dreamwire` is found at
# runtime/, every other name through the normal path, so the import graph sees only runtime/'s tree.
_EDITABLE = """
import importlib.util, sys
from importlib.machinery import PathFinder
class Editable:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname == "dreamwire":
            return importlib.util.spec_from_file_location(
                fullname, {root!r} + "/runtime/__init__.py", submodule_search_locations=[{root!r} + "/runtime"])
        if fullname.startswith("dreamwire."):
            parent = sys.modules[fullname.rpartition(".")[0]]
            return PathFinder.find_spec(fullname, list(parent.__path__))
        return None
sys.meta_path.insert(0, Editable)
from importlinter.cli import lint_imports_command
sys.argv = ["lint-imports", "--no-cache"]
sys.exit(lint_imports_command())
"""


@pytest.mark.slow
def test_lint_imports_passes_on_an_editable_install():
    _lint_imports()  # skips without import-linter
    code = _EDITABLE.format(root=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_intervals_are_timed_with_perf_counter_not_monotonic():
    """time.monotonic() ticks every 15.6 ms on Windows before Python 3.13 (cpython gh-88494): latency figures,
    pacing and the bridges' deadlines would be quantised to it; perf_counter is QueryPerformanceCounter there."""
    users = [str(p.relative_to(ROOT)) for folder in FOLDERS.values() for p in folder.rglob("*.py")
             if "runtime/bridges" not in str(p) and re.search(r"\bmonotonic\(|time\.monotonic\b",
                                                                p.read_text(encoding="utf-8"))]
    assert users == [], users


def test_no_test_module_imports_another():
    """Shared doubles live in tests/fakes and shared fixtures in conftest.py, so a test file can move alone."""
    importers = [p.name for p in (ROOT / "tests").glob("test_*.py")
                 if re.search(r"^\s*(from tests\.test_\w+ import|import tests\.test_)", p.read_text(encoding="utf-8"),
                              flags=re.M)]
    assert importers == []
