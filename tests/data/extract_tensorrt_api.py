"""Regenerate ``tensorrt_api.json``: the Python API of TensorRT releases, read from NVIDIA's own sources.

Run against a clone of https://github.com/NVIDIA/TensorRT (its ``release/X.Y`` branches)::

    python tests/data/extract_tensorrt_api.py /path/to/TensorRT release/10.1 release/10.16 release/11.0 release/11.1

For each branch it reads the pybind11 binding sources (``python/src/**/*.cpp``) and the package
``__init__.py`` (``python/packaging/bindings_wheel/tensorrt/__init__.py``) with ``git show`` and lists,
per Python-visible class/enum, the names it binds (``.def``, ``.def_property*``, ``.def_read*``,
``.def_static``, enum ``.value``, ``export_values`` into the enclosing class), with base-class members
folded in, plus the module-level names. Only names are kept, never code.
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

    files = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", branch, "python/src"],
                           check=True, capture_output=True, text=True).stdout.split()
    scopes: dict[str, dict] = {}
    module: set[str] = set()
    var_names: dict[str, str] = {}
    for f in sorted(p for p in files if p.endswith(".cpp")):
        text = show(f)
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


def main(argv: list[str]) -> None:
    repo, branches = Path(argv[0]), argv[1:]
    out = {
        "source": "https://github.com/NVIDIA/TensorRT, python/src/**/*.cpp (pybind11 bindings) and "
                  "python/packaging/bindings_wheel/tensorrt/__init__.py, per release branch",
        "generated_by": "tests/data/extract_tensorrt_api.py",
        "releases": {b.removeprefix("release/"): release_api(repo, b) for b in branches},
    }
    target = Path(__file__).with_name("tensorrt_api.json")
    target.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
