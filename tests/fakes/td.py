"""A stand-in for TouchDesigner's ``td`` module: just the documented API the network builder uses.

TouchDesigner cannot run on the CI machine, so ``td_project/dreamwire_builder.py``
runs against this. It is deliberately strict where a real mistake would
otherwise pass silently:

* only the operator types listed in ``td_project/README.md`` exist (any other
  ``td.<name>`` is an AttributeError), and each has only the parameters the
  README lists for it (reading or setting any other raises), so the README and
  this stand-in share one list;
* custom parameter names must be a capital letter then lower-case letters and
  digits, as TouchDesigner requires;
* ``oscoutDAT.sendOSC`` encodes its values the way the OSC Out DAT documents
  (``int`` -> ``i``, ``float`` -> ``f``, ``str`` -> ``s``; ``bool`` -> ``T``/``F``
  only with non-standard types on) into real OSC bytes, and records them;
* a Parameter Execute DAT runs its own text (``onValueChange(par, prev)``,
  ``onPulse(par)``) when a watched custom parameter of its ``op`` changes or is
  pulsed, and an OSC In DAT parses real datagrams and calls its callbacks DAT's
  ``onReceiveOSC(dat, rowIndex, message, bytes, timeStamp, address, args, peer)``,
  one call per message only when ``splitbundle`` is on; an OSC Out DAT does the same for datagrams sent
  back to its socket (a status reply), through its own ``callbacks``;
* ``DAT.module`` compiles a DAT as a module (with ``me`` set, as TouchDesigner may do) and ``DAT.run()``
  runs it as a script with a local tuple ``args``, so the two can be told apart as in TouchDesigner;
* ``absTime.seconds`` only moves when a test advances it.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

README = Path(__file__).resolve().parents[2] / "td_project" / "README.md"
_TABLE = re.compile(r"<!-- td-operators:begin -->(.*?)<!-- td-operators:end -->", re.S)
_CUSTOM_NAME = re.compile(r"^[A-Z][a-z0-9]*$")
_STYLES = ("Str", "Float", "Int", "Toggle", "Pulse")


def operator_parameters(readme: Path = README) -> dict[str, frozenset[str]]:
    """Operator type -> the parameter names the builder may use, read from the README's table."""
    block = _TABLE.search(readme.read_text(encoding="utf-8"))
    if block is None:
        raise AssertionError(f"{readme} has no td-operators table")
    out: dict[str, frozenset[str]] = {}
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        out[cells[0].strip("`")] = frozenset(re.findall(r"`([a-z0-9]+)`", cells[1]))
    return out


class OpType:
    """``td.baseCOMP``, ``td.inTOP``, ...: what ``COMP.create`` takes."""

    def __init__(self, name: str, pars: frozenset[str]) -> None:
        self.name, self.pars = name, pars

    def __repr__(self) -> str:
        return self.name


# --- parameters ----------------------------------------------------------------------------------------


class Par:
    """A parameter: ``val``/``eval()``, and for custom ones the documented range and default attributes."""

    def __init__(self, owner: OP, name: str, style: str = "", label: str = "", custom: bool = False) -> None:
        self.owner, self.name, self.style, self.label, self.isCustom = owner, name, style, label, custom
        self.default: Any = _initial(style)
        self._val: Any = self.default
        self.min = self.max = self.normMin = self.normMax = 0.0
        self.clampMin = self.clampMax = False
        self.isPulse = style == "Pulse"

    def eval(self) -> Any:
        return self._val

    @property
    def val(self) -> Any:
        return self._val

    @val.setter
    def val(self, value: Any) -> None:
        if self.isPulse:
            raise TypeError(f"{self.name} is a pulse parameter: use pulse()")
        value = self._clamped(_typed(self.style, value))
        prev, self._val = self._val, value
        if self.isCustom and value != prev:
            self.owner._changed(self, prev)

    def pulse(self) -> None:
        if not self.isPulse:
            raise TypeError(f"{self.name} is not a pulse parameter")
        self.owner._pulsed(self)

    def _clamped(self, value: Any) -> Any:
        if self.style in ("Float", "Int"):
            if self.clampMin and value < self.min:
                value = type(value)(self.min)
            if self.clampMax and value > self.max:
                value = type(value)(self.max)
        return value


def _initial(style: str) -> Any:
    return {"Str": "", "Float": 0.0, "Int": 0, "Toggle": False}.get(style, "")


def _typed(style: str, value: Any) -> Any:
    if style == "Float":
        return float(value)
    if style == "Int":
        return int(value)
    if style == "Toggle":
        return bool(value)
    if style == "Str":
        return str(value)
    return value


class ParGroup(list):
    """What ``Page.append*`` returns: the parameters of one line (one here: size is always 1)."""


class ParCollection:
    """``op.par``: ``par.<name>`` reads a Par, ``par.<name> = value`` sets its value, ``par[name]`` is Par or None."""

    def __init__(self, owner: OP, names: frozenset[str]) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_pars", {n: Par(owner, n) for n in names})

    def __getattr__(self, name: str) -> Par:
        pars = object.__getattribute__(self, "_pars")
        if name not in pars:
            raise AttributeError(f"{self._owner.OPType} {self._owner.path} has no parameter {name!r} "
                                 "(not in td_project/README.md's list)")
        return pars[name]

    def __setattr__(self, name: str, value: Any) -> None:
        par = self.__getattr__(name)
        owner = object.__getattribute__(self, "_owner")
        owner._world.used.add((owner.OPType, name))
        if par.isCustom:
            par.val = value
        else:
            par._val = value

    def __getitem__(self, name: str) -> Par | None:
        return object.__getattribute__(self, "_pars").get(name)

    def _add(self, par: Par) -> None:
        object.__getattribute__(self, "_pars")[par.name] = par


class Page:
    def __init__(self, owner: COMP, name: str) -> None:
        self.owner, self.name, self.isCustom = owner, name, True
        self.pars: list[Par] = []

    def _append(self, style: str, name: str, label: str | None = None, size: int = 1, order: Any = None,
                replace: bool = True) -> ParGroup:
        if not _CUSTOM_NAME.match(name):
            raise ValueError(f"custom parameter name {name!r}: a capital letter, then lower-case letters/digits")
        existing = self.owner.par[name]
        if existing is not None and not replace:
            raise ValueError(f"parameter {name!r} already exists")
        par = Par(self.owner, name, style, label or name, custom=True)
        if existing is not None:  # replaced in place: same page, same position
            for page in self.owner.customPages:
                if existing in page.pars:
                    page.pars[page.pars.index(existing)] = par
        else:
            self.pars.append(par)
        self.owner.par._add(par)
        return ParGroup([par])

    def appendStr(self, name: str, **kw: Any) -> ParGroup:
        return self._append("Str", name, **kw)

    def appendFloat(self, name: str, **kw: Any) -> ParGroup:
        return self._append("Float", name, **kw)

    def appendInt(self, name: str, **kw: Any) -> ParGroup:
        return self._append("Int", name, **kw)

    def appendToggle(self, name: str, **kw: Any) -> ParGroup:
        return self._append("Toggle", name, **kw)

    def appendPulse(self, name: str, **kw: Any) -> ParGroup:
        return self._append("Pulse", name, **kw)


# --- operators -----------------------------------------------------------------------------------------


class Connector:
    def __init__(self, owner: OP, index: int, is_input: bool) -> None:
        self.owner, self.index, self.isInput, self.isOutput = owner, index, is_input, not is_input
        self.connections: list[Connector] = []

    def connect(self, target: Any) -> None:
        """Wire to an operator or a connector; an input holds one wire, so a new one replaces the old."""
        other = target if isinstance(target, Connector) else (
            target.inputConnectors[0] if self.isOutput else target.outputConnectors[0])
        if other.isInput == self.isInput:
            raise ValueError("connect an output to an input")
        src, dst = (self, other) if self.isOutput else (other, self)
        for old in dst.connections:
            old.connections.remove(dst)
        dst.connections = [src]
        if dst not in src.connections:
            src.connections.append(dst)


_INPUTS = {"outTOP": 1, "syphonspoutoutTOP": 1, "ndioutTOP": 1}
_OUTPUTS = {"inTOP": 1, "syphonspoutinTOP": 1, "ndiinTOP": 1, "outTOP": 1}


class OP:
    def __init__(self, world: World, optype: OpType, name: str, parent: COMP | None) -> None:
        self._world, self.OPType, self.name, self._parent = world, optype.name, name, parent
        self.par = ParCollection(self, optype.pars)
        self.inputConnectors = [Connector(self, i, True) for i in range(_INPUTS.get(optype.name, 0))]
        self.outputConnectors = [Connector(self, i, False) for i in range(_OUTPUTS.get(optype.name, 0))]
        self.nodeX = self.nodeY = 0
        self.valid = True

    @property
    def path(self) -> str:
        if self._parent is None:
            return "/"
        base = self._parent.path
        return f"{base.rstrip('/')}/{self.name}"

    def parent(self) -> COMP | None:
        return self._parent

    def op(self, path: str) -> OP | None:
        """As in TouchDesigner: absolute, or relative to this operator, where ``..`` is its parent COMP and a
        bare name is a sibling (a child, for a COMP)."""
        if path.startswith("/"):
            return self._world.op(path)
        if isinstance(self, COMP):
            return self._resolve(path)
        if self._parent is None:
            return None
        if path == ".." or path.startswith("../"):
            return self._parent._resolve(path[2:])
        return self._parent._resolve(path)

    def destroy(self) -> None:
        for c in self.inputConnectors + self.outputConnectors:
            for other in list(c.connections):
                other.connections.remove(c)
            c.connections.clear()
        if self._parent is not None:
            del self._parent.children_by_name[self.name]
        self.valid = False

    def _changed(self, par: Par, prev: Any) -> None:
        self._world.notify(par, prev, pulse=False)

    def _pulsed(self, par: Par) -> None:
        self._world.notify(par, None, pulse=True)


class COMP(OP):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.children_by_name: dict[str, OP] = {}
        self.customPages: list[Page] = []

    @property
    def children(self) -> list[OP]:
        return list(self.children_by_name.values())

    def create(self, optype: Any, name: str) -> OP:
        if not isinstance(optype, OpType):
            raise TypeError(f"create() takes an operator type such as td.baseCOMP, got {optype!r}")
        if name in self.children_by_name:
            raise ValueError(f"{self.path} already has an operator named {name!r}")
        self._world.used.add((optype.name, ""))
        made = _CLASSES.get(optype.name, DAT if optype.name.endswith("DAT") else
                            COMP if optype.name.endswith("COMP") else OP)(self._world, optype, name, self)
        self.children_by_name[name] = made
        return made

    def appendCustomPage(self, name: str) -> Page:
        page = Page(self, name)
        self.customPages.append(page)
        return page

    def _resolve(self, path: str) -> OP | None:
        node: OP | None = self
        for part in [p for p in path.split("/") if p]:
            if node is None:
                return None
            if part == "..":
                node = node.parent()
            elif isinstance(node, COMP):
                node = node.children_by_name.get(part)
            else:
                return None
        return node


class Cell:
    def __init__(self, row: list[str], col: int) -> None:
        self._row, self._col = row, col

    @property
    def val(self) -> str:
        return self._row[self._col]

    @val.setter
    def val(self, value: Any) -> None:
        self._row[self._col] = str(value)


class DAT(OP):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self._text = ""
        self.rows: list[list[str]] = []
        self._module: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._text, self._module = str(value), None

    @property
    def numRows(self) -> int:
        return len(self.rows)

    def clear(self) -> None:
        self.rows = []

    def appendRow(self, cells: list[Any]) -> None:
        self.rows.append([str(c) for c in cells])

    def __getitem__(self, key: tuple[Any, int]) -> Cell | None:
        row, col = key
        match = [r for r in self.rows if r and r[0] == row] if isinstance(row, str) else [self.rows[row]]
        return Cell(match[0], col) if match and col < len(match[0]) else None

    def _scope(self) -> dict[str, Any]:
        """The globals TouchDesigner gives a DAT's Python: ``me``, ``op``, ``parent``, ``absTime``."""
        return {"me": self, "op": self.op, "parent": self.parent, "absTime": self._world.absTime,
                "__name__": self.name}

    @property
    def module(self) -> types.SimpleNamespace:
        """This DAT's text compiled as a module (``op('text1').module``), once per text. TouchDesigner may set
        ``me`` to the DAT while it compiles it, so ``me`` is set here too; there is no ``args``."""
        if self._module is None:
            scope = self._scope()
            exec(compile(self._text, self.path, "exec"), scope)
            self._module = scope
        return types.SimpleNamespace(**self._module)

    def run(self, *args: Any) -> None:
        """*Run Script* / ``DAT.run(arg1, ...)``: the text as a script, its arguments "in a local tuple named
        args" (DAT Class, ``run``), so ``args`` exists, and is ``()`` without arguments."""
        exec(compile(self._text, self.path, "exec"), {**self._scope(), "args": tuple(args)})


class _ReceivesOSC(DAT):
    """An OSC In DAT, and an OSC Out DAT for what comes back to its socket (its *Received Messages* page:
    ``callbacks``, ``splitbundle``): a row and a callback per message."""

    def receive(self, dgram: bytes, peer: Any = None) -> None:
        """A datagram arrives on the DAT's socket (bundles need ``splitbundle``)."""
        if not self.par.active.eval():
            return
        if OscBundle.dgram_is_bundle(dgram):
            if not self.par.splitbundle.eval():
                raise NotImplementedError("this stand-in only models bundles split into messages")
            messages = list(_flatten(OscBundle(dgram)))
        else:
            messages = [OscMessage(dgram)]
        callbacks = self.op(str(self.par.callbacks.eval()))
        for m in messages:
            text = " ".join([m.address, *map(str, m.params)])
            self.appendRow([text])
            if callbacks is not None:
                callbacks.module.onReceiveOSC(self, self.numRows - 1, text, m.dgram, 0.0, m.address,
                                              tuple(m.params), peer)


class OscOutDAT(_ReceivesOSC):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.sent: list[bytes] = []

    def sendOSC(self, address: str, values: list[Any], asBundle: bool = False, useNonStandardTypes: bool = True,
                use64BitPrecision: bool = False) -> int:
        if not isinstance(values, (list, tuple)):
            raise TypeError("sendOSC takes the values as a list")
        builder = OscMessageBuilder(address)
        for v in values:
            builder.add_arg(v, arg_type=_osc_tag(v, useNonStandardTypes, use64BitPrecision))
        dgram = builder.build().dgram
        self.sent.append(dgram)
        return len(dgram)


def _osc_tag(value: Any, non_standard: bool, wide: bool) -> str:
    if isinstance(value, bool):
        if not non_standard:
            raise TypeError("a bool needs non-standard OSC types (T/F); send 0/1 as int instead")
        return "T" if value else "F"
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return "i"
        if non_standard:
            return "h"
        raise OverflowError(f"{value} does not fit an OSC int32")
    if isinstance(value, float):
        return "d" if wide else "f"
    if isinstance(value, str):
        return "s"
    raise TypeError(f"sendOSC cannot send a {type(value).__name__}")


class OscInDAT(_ReceivesOSC):
    """The OSC In DAT: :meth:`receive` is a datagram arriving on its port."""


def _flatten(bundle: OscBundle) -> Any:
    for content in bundle:
        if isinstance(content, OscBundle):
            yield from _flatten(content)
        else:
            yield content


class ParExecDAT(DAT):
    def watches(self, par: Par) -> bool:
        p = self.par
        if not p.active.eval() or not (p.custom.eval() if par.isCustom else p.builtin.eval()):
            return False
        target = self.op(str(p.op.eval()))
        return target is par.owner and par.name in str(p.pars.eval()).split()


_CLASSES: dict[str, type[OP]] = {"oscoutDAT": OscOutDAT, "oscinDAT": OscInDAT, "parameterexecuteDAT": ParExecDAT}


class AbsTime:
    """``td.absTime``: ``seconds`` since the session started, moved on by hand in tests (:meth:`advance`)."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class World:
    """The whole fake session: ``/``, ``/project1``, and every operator under them."""

    def __init__(self) -> None:
        self.absTime = AbsTime()
        self.types = {n: OpType(n, pars) for n, pars in operator_parameters().items()}
        self.used: set[tuple[str, str]] = set()  # (operator type, parameter) pairs set through op.par
        self.root = COMP(self, OpType("root", frozenset()), "", None)
        self.project = COMP(self, OpType("containerCOMP", frozenset()), "project1", self.root)
        self.root.children_by_name["project1"] = self.project

    def op(self, path: str) -> OP | None:
        return self.root._resolve(path)

    def walk(self, node: OP | None = None) -> list[OP]:
        node = node or self.root
        out = [node]
        for child in getattr(node, "children", []):
            out.extend(self.walk(child))
        return out

    def notify(self, par: Par, prev: Any, pulse: bool) -> None:
        for dat in [n for n in self.walk() if isinstance(n, ParExecDAT)]:
            if dat.watches(par):
                if pulse and dat.par.onpulse.eval():
                    dat.module.onPulse(par)
                elif not pulse and dat.par.valuechange.eval():
                    dat.module.onValueChange(par, prev)


def make_td() -> types.ModuleType:
    """A fresh ``td`` module over a fresh session (install it as ``sys.modules['td']``)."""
    world = World()
    module = types.ModuleType("td")
    module.__dict__.update(world.types)
    module.op = world.op
    module.absTime = world.absTime
    module.me = None
    module.world = world

    def missing(name: str) -> Any:
        raise AttributeError(f"td has no {name!r} here: not an operator type in td_project/README.md's list")

    module.__getattr__ = missing  # type: ignore[attr-defined]
    return module
