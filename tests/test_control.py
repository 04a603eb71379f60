"""The control schema: validation, coercion and atomic swaps."""

from __future__ import annotations

import threading

import pytest

from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params, validate
from dreamwire.control.schema import SCHEMA
from dreamwire.live.state import ParamState


def test_every_default_validates():
    for spec in SCHEMA:
        assert validate(spec.name, spec.default) == spec.default


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("steps", 3.0, 3),  # TouchDesigner sends floats
    ("seed", 7, 7),
    ("similarity_filter", 1.0, True),
    ("strength", 1, 1.0),
    ("prompt_blend", ["a", 1.0, "b", 3], (("a", 1.0), ("b", 3.0))),
    ("seed_blend", [[1, 0.5], [2, 0.5]], ((1, 0.5), (2, 0.5))),
    ("t_index_list", [10.0, 20, 45], (10, 20, 45)),
])
def test_coercion(name, value, expected):
    assert validate(name, value) == expected


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("nope", 1, "unknown parameter"),
    ("strength", 1.5, "outside"),
    ("strength", "high", "expected a number"),
    ("strength", float("nan"), "not finite"),
    ("steps", 2.5, "integer"),
    ("steps", 0, "outside"),
    ("prompt", 3, "string"),
    ("similarity_filter", 2, "0 or 1"),
    ("prompt_blend", ["a", 1.0, "b"], "odd"),
    ("prompt_blend", ["a", -1.0], "negative"),
    ("prompt_blend", ["a", 0.0], "zero"),
    ("t_index_list", [20, 10], "ascending"),
    ("t_index_list", [60], "outside"),
    ("seed", True, "expected an integer"),
])
def test_rejections(name, value, fragment):
    with pytest.raises(ControlError, match=fragment):
        validate(name, value)


def test_apply_is_all_or_nothing():
    state = ParamState()
    v0, p0 = state.snapshot()
    with pytest.raises(ControlError):
        state.apply({"prompt": "new", "strength": 9})
    assert state.snapshot() == (v0, p0)
    state.apply({"prompt": "new", "seed": 9})
    v1, p1 = state.snapshot()
    assert v1 == v0 + 1 and p1.prompt == "new" and p1.seed == 9
    assert p1.changed(p0) == {"prompt", "seed"}


def test_params_are_immutable_and_hashable():
    p = Params()
    with pytest.raises(AttributeError):
        p.prompt = "x"
    assert hash(p) == hash(Params())
    assert p.replace(seed=3) != p


def test_concurrent_bundles_never_interleave():
    state = ParamState()
    stop = threading.Event()
    torn = []

    def reader():
        while not stop.is_set():
            p = state.params
            if (p.prompt == "A") != (p.seed == 1):
                torn.append(p)

    state.apply({"prompt": "A", "seed": 1})
    t = threading.Thread(target=reader)
    t.start()
    for i in range(2000):
        state.apply({"prompt": "A", "seed": 1} if i % 2 else {"prompt": "B", "seed": 2})
    stop.set()
    t.join()
    assert not torn


def test_effective_t_index_prefers_explicit_list():
    from dreamwire.engine.schedule import t_index_for

    def effective(p: Params) -> tuple[int, ...]:
        return t_index_for(p.strength, p.steps, p.t_index_list)

    assert effective(Params({"t_index_list": (5, 9)})) == (5, 9)
    assert len(effective(Params({"steps": 3}))) == 3
