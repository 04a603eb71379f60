"""Regenerate ``tensorrt_api.json``: the Python API of TensorRT releases, read from NVIDIA's own sources.

Run against a clone of https://github.com/NVIDIA/TensorRT (its ``release/X.Y`` branches), plus the
real binding wheels of releases whose sources NVIDIA has not published (11.2-11.4 are on PyPI as
``tensorrt-cu12-bindings`` but have no ``release/`` branch), each after ``=`` with the source release
whose class layout it keeps::

    pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
        tensorrt-cu12-bindings==11.2.1.2 tensorrt-cu12-bindings==11.3.0.99 tensorrt-cu12-bindings==11.4.0.106
    python tests/data/extract_tensorrt_api.py /path/to/TensorRT release/10.1 release/10.16 release/11.0 \
        release/11.1 11.2=tensorrt_cu12_bindings-11.2.1.2-....whl@11.1 ...

For each branch it reads the pybind11 binding sources (``python/src/**/*.cpp``) and the package
``__init__.py`` (``python/packaging/bindings_wheel/tensorrt/__init__.py``) with ``git show`` and lists,
per Python-visible class/enum, the names it binds (``.def``, ``.def_property*``, ``.def_read*``,
``.def_static``, enum ``.value``, ``export_values`` into the enclosing class), with base-class members
folded in, plus the module-level names. Blocks under ``#if MACRO`` where MACRO is ``#define``d nowhere in
``python/`` are dropped: they are compiled out of the wheels (``INetworkDefinition.serialize`` sits under
``#if ENABLE_INETWORK_SERIALIZE``, release/11.1 ``python/src/infer/pyGraph.cpp:1204``).

A wheel release keeps the classes of its source release, each member kept only where its name is a
string in the wheel's ``tensorrt.so`` (pybind11 keeps every bound name as a NUL-terminated literal;
checked on 11.0 and 11.1, whose wheels hold every name their sources bind, and none of those 11.0
removed) or is defined in the wheel's ``__init__.py``. Only names are kept, never code.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

_HEAD = re.compile(r"py::(class_|enum_)\s*<")
_MEMBER = re.compile(r'\.(?:def|def_property|def_property_readonly|def_readwrite|def_readonly|def_static|value)'
                     r'\s*\(\s*"([^"]+)"')
_MODULE_DEF = re.compile(r'\bm\s*\.\s*(?:def|attr)\s*\(\s*"([^"]+)"')
_VAR_DEF = re.compile(r"\b([A-Za-z_]\w*)\s*\.\s*def\w*\s*\(")


def strip_comments(src: str) -> str:
    """C++ source with comments blanked (string literals kept), so scanning never sees commented code."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "\"'":  # a string or char literal, kept whole
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_IF = re.compile(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b[ \t]*([A-Za-z_]\w*)?.*$", re.M)


def drop_disabled(src: str, defined: set[str]) -> str:
    """``src`` without the ``#if NAME`` / ``#ifdef NAME`` blocks (or their ``#else`` halves) that are off.

    Only the plain one-macro forms are decided, a macro being on when it is in ``defined``; every other
    condition keeps both branches, as the scanner did before.
    """
    out, pos, stack = [], 0, []  # stack: per open #if, whether its current branch is dropped (None: undecided)
    for m in _IF.finditer(src):
        if not any(stack):
            out.append(src[pos:m.start()])
        word, name = m.group(1), m.group(2)
        if word in ("if", "ifdef", "ifndef"):
            plain = name is not None and m.group(0).split(name, 1)[1].strip() == ""
            on = (name in defined) != (word == "ifndef") if plain else None
            stack.append(None if on is None else not on)
        elif word == "else" and stack:
            stack[-1] = None if stack[-1] is None else not stack[-1]
        elif word == "elif" and stack:
            stack[-1] = None
        elif word == "endif" and stack:
            stack.pop()
        pos = m.end()
    if not any(stack):
        out.append(src[pos:])
    return "".join(out)


def statement_end(src: str, start: int) -> int:
    """Index of the ``;`` ending the statement at ``start`` (outside parens, braces and strings)."""
    depth, i = 0, start
    while i < len(src):
        c = src[i]
        if c == '"':
            i += 1
            while src[i] != '"':
                i += 2 if src[i] == "\\" else 1
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == ";" and depth <= 0:
            return i
        i += 1
    return len(src)


def template_args(src: str, start: int) -> tuple[list[str], int]:
    """The comma-separated template arguments after ``<`` at ``start``, and the index after ``>``."""
    depth, i, args, cur = 1, start, [], []
    while depth:
        c = src[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if not depth:
                break
        if c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur).strip())
    return args, i + 1


def parse_bindings(src: str) -> tuple[dict[str, dict], set[str]]:
    """``{python_name: {"cpp": type, "bases": [...], "members": set, "scope": var, "export": bool}}``, module names."""
    src = strip_comments(src)
    scopes: dict[str, dict] = {}
    var_of: dict[str, str] = {}  # C++ variable holding a class binding -> python name
    for m in _HEAD.finditer(src):
        args, after = template_args(src, m.end())
        head = re.match(r'\s*(?:([A-Za-z_]\w*)\s*)?[({]\s*([A-Za-z_]\w*)\s*,\s*"([^"]+)"', src[after:])
        if not head:
            continue
        var, parent, name = head.groups()
        end = statement_end(src, after)
        body = src[after:end]
        entry = scopes.setdefault(name, {"cpp": args[0], "bases": [], "members": set(), "parent": parent,
                                         "export": False})
        entry["bases"] += [a for a in args[1:] if not a.startswith(("std::", "py::"))]
        entry["members"].update(_MEMBER.findall(body[head.end():]))
        entry["export"] |= ".export_values()" in body
        if var:
            var_of[var] = name
    for m in _VAR_DEF.finditer(src):  # statements like `baseLoggerBinding.def("log", ...)`
        if m.group(1) in var_of:
            end = statement_end(src, m.start())
            scopes[var_of[m.group(1)]]["members"].update(_MEMBER.findall(src[m.start() - 1:end]))
    return scopes, set(_MODULE_DEF.findall(src))


def resolve(scopes: dict[str, dict], var_names: dict[str, str]) -> dict[str, list[str]]:
    """Per python class: its members plus its bases' (by C++ type) and nested enums/classes."""
    by_cpp = {e["cpp"].split("::")[-1]: n for n, e in scopes.items()}
    members = {n: set(e["members"]) for n, e in scopes.items()}
    for name, e in scopes.items():  # nested scopes: `py::enum_<X>(someClassVar, "Severity")`
        parent = var_names.get(e["parent"])
        if parent:
            members[parent].add(name)
            if e["export"]:
                members[parent].update(e["members"])

    def full(name: str, seen: frozenset = frozenset()) -> set[str]:
        out = set(members[name])
        for base in scopes[name]["bases"]:
            b = by_cpp.get(base.split("::")[-1])
            if b and b not in seen and b != name:
                out |= full(b, seen | {name})
        return out

    return {n: sorted(full(n)) for n in scopes if scopes[n]["parent"] == "m"}


def release_api(repo: Path, branch: str) -> dict:
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "show", f"{branch}:{path}"], check=True,
                              capture_output=True, text=True).stdout

    files = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", branch, "python"],
                           check=True, capture_output=True, text=True).stdout.split()
    sources = {f: show(f) for f in files if f.endswith((".cpp", ".h")) and f.startswith(("python/src/",
                                                                                      "python/include/"))}
    defined = {m for text in sources.values() for m in re.findall(r"^[ \t]*#[ \t]*define[ \t]+(\w+)", text, re.M)}
    scopes: dict[str, dict] = {}
    module: set[str] = set()
    var_names: dict[str, str] = {}
    for f in sorted(p for p in sources if p.startswith("python/src/") and p.endswith(".cpp")):
        text = drop_disabled(sources[f], defined)
        s, mod = parse_bindings(text)
        for name, e in s.items():
            if name in scopes:
                scopes[name]["members"] |= e["members"]
            else:
                scopes[name] = e
        module |= mod
        for m in re.finditer(r'py::class_\s*<[^;{(]*>\s*([A-Za-z_]\w*)\s*[{(]\s*m\s*,\s*"([^"]+)"',
                             strip_comments(text)):
            var_names[m.group(1)] = m.group(2)
    var_names["m"] = ""
    classes = resolve(scopes, var_names)
    init = show("python/packaging/bindings_wheel/tensorrt/__init__.py").replace("##", "")
    tree = ast.parse(init)
    py_names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    py_names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", branch], check=True, capture_output=True,
                            text=True).stdout.strip()
    return {"branch": branch, "commit": commit, "module": sorted(module | set(classes) | py_names),
            "classes": classes}


def wheel_api(wheel: Path, base: dict) -> dict:
    """A release known only by its binding wheel: ``base``'s classes, filtered by the wheel's names."""
    import hashlib
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        so = next(z.read(n) for n in z.namelist() if n.endswith("/tensorrt.so"))
        init = next(z.read(n) for n in z.namelist() if n.endswith("bindings/__init__.py")).decode()
    tree = ast.parse(init)
    py_names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    py_names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}

    def bound(name: str) -> bool:
        return name.encode() + b"\0" in so or name in py_names

    classes = {c: [m for m in ms if bound(m)] for c, ms in base["classes"].items() if bound(c)}
    return {"wheel": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "layout_from": base["branch"], "module": sorted(n for n in base["module"] if bound(n)),
            "classes": classes}


def main(argv: list[str]) -> None:
    repo, args = Path(argv[0]), argv[1:]
    releases = {b.removeprefix("release/"): release_api(repo, b) for b in args if "=" not in b}
    for arg in (a for a in args if "=" in a):
        name, rest = arg.split("=", 1)
        wheel, base = rest.rsplit("@", 1)
        releases[name] = wheel_api(Path(wheel), releases[base])
    out = {
        "source": "https://github.com/NVIDIA/TensorRT, python/src/**/*.cpp (pybind11 bindings) and "
                  "python/packaging/bindings_wheel/tensorrt/__init__.py, per release branch; releases without "
                  "a branch: the tensorrt.so and __init__.py of their PyPI tensorrt-cu12-bindings wheel",
        "generated_by": "tests/data/extract_tensorrt_api.py",
        "releases": releases,
    }
    target = Path(__file__).with_name("tensorrt_api.json")
    target.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
