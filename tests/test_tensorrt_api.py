"""Every TensorRT name the code uses exists in the real Python API of TensorRT 10 and 11.

The API lists (tests/data/tensorrt_api.json) are extracted from NVIDIA's own binding sources,
https://github.com/NVIDIA/TensorRT ``python/src/**/*.cpp`` and
``python/packaging/bindings_wheel/tensorrt/__init__.py``, on the release/10.1 (the floor in
pyproject.toml), release/10.16 (the last 10.x), release/11.0 and release/11.1 branches, at the
commits recorded in the file; 11.2, 11.3 and 11.4 (allowed by ``<12``, no published branch) from the
``tensorrt.so`` and ``__init__.py`` of their PyPI ``tensorrt-cu12-bindings`` wheels (names and sha256
recorded), all by tests/data/extract_tensorrt_api.py. Nothing here imports tensorrt.

Attribute chains through a call (``config.get_timing_cache().serialize()``) are checked too: the
class a call returns comes from :data:`RETURNS`, each entry cited to the binding that defines it.
"""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent
API = json.loads((ROOT / "tests" / "data" / "tensorrt_api.json").read_text(encoding="utf-8"))
RELEASES = API["releases"]
BACKENDS = ROOT / "runtime" / "backends"
TRT_MODULES = [BACKENDS / "tensorrt.py", *sorted(BACKENDS.glob("trt_*.py"))]
# In the modules that drive TensorRT objects, these receiver names always hold these TensorRT classes.
RECEIVERS = {"builder": "Builder", "parser": "OnnxParser", "config": "IBuilderConfig",
             "profile": "IOptimizationProfile", "engine": "ICudaEngine", "context": "IExecutionContext",
             "_runtime": "Runtime"}
TYPED_MODULES = ("trt_build.py", "trt_run.py")
# What a TensorRT method returns, so a chain through its call is checked on the returned class
# (release/11.1 python/src/infer/pyCore.cpp; the C++ return type in include/NvInfer*.h).
RETURNS = {
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",  # pyCore.cpp:1743, NvInfer.h:10969
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",  # pyCore.cpp:1738
    ("Builder", "create_builder_config"): "IBuilderConfig",  # pyCore.cpp:1796
    ("Builder", "create_network"): "INetworkDefinition",  # pyCore.cpp:1787
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",  # pyCore.cpp:1792
    ("Builder", "build_serialized_network"): "IHostMemory",  # pyCore.cpp:1798
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",  # pyCore.cpp:1838
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",  # pyCore.cpp:1422
    ("IExecutionContext", "get_tensor_shape"): "Dims",  # pyCore.cpp (IExecutionContext::getTensorShape)
}
# Attribute names of the Python and torch objects these modules also use; a TensorRT class may share one.
PLAIN_NAMES = set().union(*(dir(t) for t in (io.BufferedWriter, Path, torch.Tensor, torch.cuda.Stream, dict, list,
                                             str, bytes)))


def module_chains(source: str) -> set[tuple[str, ...]]:
    """``("BuilderFlag", "TF32")`` for every ``trt.BuilderFlag.TF32`` (or ``self.trt....``) in ``source``."""
    chains = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        names, cur = [], node
        while isinstance(cur, ast.Attribute):
            names.append(cur.attr)
            cur = cur.value
        is_trt = (isinstance(cur, ast.Name) and cur.id in ("trt", "tensorrt")) or (
            isinstance(cur, ast.Name) and cur.id == "self" and names and names[-1] == "trt")
        if not is_trt:
            continue
        names.reverse()
        if names[0] == "trt":  # self.trt.X.Y
            names = names[1:]
        names = [n for n in names if not n.startswith("__")]  # __version__, __init__: every module/class has them
        if names:
            chains.add(tuple(names))
    # keep only maximal chains (trt.A.B implies trt.A)
    return {c for c in chains if not any(o != c and o[:len(c)] == c for o in chains)}


def attribute_names(source: str) -> set[str]:
    """Every ``x.name`` accessed in ``source`` (methods and properties called on TensorRT objects among them)."""
    return {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)}


def own_names() -> set[str]:
    """Functions, methods and attributes the backends define themselves (``GraphPool.exclusive``, ...)."""
    out = set()
    for path in BACKENDS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                out |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
    return out


def typed_uses(source: str) -> set[tuple[str, str]]:
    """``("IBuilderConfig", "set_timing_cache")`` for ``config.set_timing_cache`` (receivers in RECEIVERS)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            recv = node.value
            key = recv.id if isinstance(recv, ast.Name) else recv.attr if isinstance(recv, ast.Attribute) else None
            if key in RECEIVERS:
                out.add((RECEIVERS[key], node.attr))
    return out


def _receiver_class(node: ast.expr) -> str | None:
    """The TensorRT class ``node`` holds: a typed receiver name, ``trt.X(...)``, or a call on one of those."""
    if isinstance(node, ast.Name):
        return RECEIVERS.get(node.id)
    if isinstance(node, ast.Attribute):  # self.engine
        return RECEIVERS.get(node.attr)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        recv = node.func.value
        if isinstance(recv, ast.Name) and recv.id in ("trt", "tensorrt"):
            return node.func.attr  # a constructor returns its class
        cls = _receiver_class(recv)
        return None if cls is None else RETURNS.get((cls, node.func.attr), "?")
    return None


def call_chains(source: str) -> set[tuple[str, str, str]]:
    """``("IBuilderConfig", "get_timing_cache", "serialize")`` for ``config.get_timing_cache().serialize``.

    ``trt.Builder(logger).create_network`` is ``("Builder", "", "create_network")`` (a constructor returns
    its class), and calls nest (``trt.Builder(l).create_network(0).serialize``). A call whose return type
    :data:`RETURNS` lacks makes the receiver ``"?"``, reported, so no chain goes unchecked.
    """
    out = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not isinstance(call.func, ast.Attribute):
            continue
        recv = call.func.value
        if isinstance(recv, ast.Name) and recv.id in ("trt", "tensorrt"):
            out.add((call.func.attr, "", node.attr))
            continue
        cls = _receiver_class(recv)
        if cls is not None:
            out.add((cls, call.func.attr, node.attr))
    return out


def call_chain_problems(chains: set[tuple[str, str, str]], release: dict) -> list[str]:
    classes, out = release["classes"], []
    for cls, method, attr in sorted(chains):
        returned = cls if method == "" else RETURNS.get((cls, method), "?")
        if cls == "?" or returned == "?":
            out.append(f"{cls}.{method}() returns a type tests/test_tensorrt_api.py RETURNS does not know")
        elif attr not in classes.get(returned, ()) and not (attr in PLAIN_NAMES and returned not in classes):
            out.append(f"{cls}.{method}().{attr}" if method else f"{cls}(...).{attr}")
    return out


def chain_problems(chains: set[tuple[str, ...]], release: dict) -> list[str]:
    module, classes = set(release["module"]), release["classes"]
    out = []
    for chain in sorted(chains):
        if chain[0] not in module:
            out.append(f"tensorrt.{chain[0]}")
        elif len(chain) > 1 and chain[1] not in classes.get(chain[0], ()):
            out.append(f"tensorrt.{'.'.join(chain[:2])}")
    return out


def member_problems(names: set[str], release: dict, every: dict[str, dict]) -> list[str]:
    """Names that are a member of some TensorRT class in *some* release but of none in ``release``.

    A heuristic net under the exact checks (``trt.X.Y`` chains, typed receivers): it skips the names of
    plain Python/torch objects and of the backends' own code, which may coincide with a TensorRT member.
    """
    known_anywhere = {m for r in every.values() for members in r["classes"].values() for m in members}
    here = {m for members in release["classes"].values() for m in members}
    names = names - PLAIN_NAMES - own_names()
    return sorted(n for n in names if n in known_anywhere and n not in here and not n.startswith("__"))


def typed_problems(uses: set[tuple[str, str]], release: dict) -> list[str]:
    return sorted(f"{cls}.{name}" for cls, name in uses if name not in release["classes"].get(cls, ()))


def _sources() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in TRT_MODULES}


def test_api_lists_cite_their_source_and_cover_10_and_11():
    assert "github.com/NVIDIA/TensorRT" in API["source"] and "tensorrt-cu12-bindings" in API["source"]
    assert {r.split(".")[0] for r in RELEASES} == {"10", "11"}
    for name, rel in RELEASES.items():
        if "wheel" in rel:  # no published branch: the real binding wheel, its layout from a source release
            assert rel["wheel"].startswith(f"tensorrt_cu12_bindings-{name}.") and len(rel["sha256"]) == 64
            assert rel["layout_from"].removeprefix("release/") in RELEASES
        else:
            assert rel["branch"] == f"release/{name}" and len(rel["commit"]) == 40
        assert len(rel["classes"]) > 150 and "Builder" in rel["module"] and "__version__" in rel["module"]
    # the facts the code is built around, straight from the lists
    assert "FP16" in RELEASES["10.16"]["classes"]["BuilderFlag"]
    assert "FP16" not in RELEASES["11.1"]["classes"]["BuilderFlag"]
    assert "device_memory_size" not in RELEASES["11.1"]["classes"]["ICudaEngine"]


def test_every_11x_release_the_range_allows_is_listed_up_to_pypis_newest():
    """``<12`` allows 11.2-11.4 (11.4.0.106 is what pip resolves today): each is checked, not assumed."""
    assert {f"11.{m}" for m in range(5)} <= set(RELEASES)


def test_no_release_lists_the_compiled_out_network_serialize():
    """``INetworkDefinition.serialize`` sits under ``#if ENABLE_INETWORK_SERIALIZE``, defined nowhere: in no wheel."""
    assert all("serialize" not in rel["classes"]["INetworkDefinition"] for rel in RELEASES.values())
    assert all("serialize" in rel["classes"]["ITimingCache"] for rel in RELEASES.values())


def test_the_code_uses_tensorrt_at_all():
    chains = set().union(*(module_chains(s) for s in _sources().values()))
    assert ("BuilderFlag", "TF32") in chains and ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in chains
    assert ("ExecutionContextAllocationStrategy", "USER_MANAGED") in chains and ("OnnxParser",) in chains
    names = set().union(*(attribute_names(s) for s in _sources().values()))
    assert {"create_network", "execute_async_v3", "set_device_memory", "create_timing_cache"} <= names
    assert ("IBuilderConfig", "get_timing_cache", "serialize") in set().union(*map(call_chains, _sources().values()))
    typed = set().union(*(typed_uses(s) for n, s in _sources().items() if n in TYPED_MODULES))
    assert {("IBuilderConfig", "set_timing_cache"), ("IExecutionContext", "set_device_memory"),
            ("ICudaEngine", "device_memory_size_v2"), ("Builder", "build_serialized_network")} <= typed


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_every_tensorrt_name_in_the_code_exists_in_each_release(release):
    rel = RELEASES[release]
    problems = {}
    for name, source in _sources().items():
        bad = chain_problems(module_chains(source), rel) + member_problems(attribute_names(source), rel, RELEASES)
        if name in TYPED_MODULES:
            bad += typed_problems(typed_uses(source), rel) + call_chain_problems(call_chains(source), rel)
        if bad:
            problems[name] = bad
    assert not problems, f"not in TensorRT {release}'s Python API: {problems}"


def test_the_check_catches_what_broke_tensorrt_11():
    """The code before this fix used BuilderFlag.FP16: the same check flags it for 11.x, not for 10.x."""
    old = ("def f(trt, config, engine):\n    config.set_flag(trt.BuilderFlag.FP16)\n"
           "    return engine.device_memory_size\n")
    assert chain_problems(module_chains(old), RELEASES["10.16"]) == []
    assert chain_problems(module_chains(old), RELEASES["11.1"]) == ["tensorrt.BuilderFlag.FP16"]
    assert member_problems(attribute_names(old), RELEASES["11.1"], RELEASES) == ["FP16", "device_memory_size"]
    assert typed_problems(typed_uses(old), RELEASES["11.1"]) == ["ICudaEngine.device_memory_size"]
    assert typed_problems(typed_uses(old), RELEASES["10.1"]) == []


def test_chains_through_a_call_are_checked_on_the_returned_class():
    good = "def f(config):\n    return config.get_timing_cache().serialize()\n"
    typo = "def f(config):\n    return config.get_timing_cache().serialise()\n"
    network = "def f(trt, logger):\n    return trt.Builder(logger).create_network(0).serialize()\n"
    unknown = "def f(engine):\n    return engine.get_tensor_name(0).upper()\n"
    rel = RELEASES["11.4"]
    assert call_chain_problems(call_chains(good), rel) == []
    assert call_chain_problems(call_chains(typo), rel) == ["IBuilderConfig.get_timing_cache().serialise"]
    assert call_chain_problems(call_chains(network), rel) == ["Builder.create_network().serialize"]
    assert "RETURNS does not know" in call_chain_problems(call_chains(unknown), rel)[0]


def test_the_declared_tensorrt_range_is_the_one_checked():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert "tensorrt" not in extras  # the bare meta-package picks CUDA 13 whatever torch was built for
    for cuda in ("cu12", "cu13"):
        spec = next(d for d in extras[f"tensorrt-{cuda}"] if d.startswith("tensorrt"))
        floor, cap = spec.removeprefix(f"tensorrt-{cuda}>=").split(",<")
        assert tuple(map(int, floor.split("."))) >= (10, 1)
        assert {r.split(".")[0] for r in RELEASES} == {str(m) for m in range(10, int(cap))}
    assert extras["tensorrt-cu12"][0] == "tensorrt-cu12>=10.1,<12"  # the floor is a release the names are checked on
    assert "10.1" in RELEASES
