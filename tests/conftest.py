"""Shared fixtures: one offline tiny model per test session, and engine factories around it."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.fakes.backends import CountingBackend


def pytest_configure(config: pytest.Config) -> None:
    # Every test (and every subprocess a test starts) builds the tiny model into a private cache,
    # never the user's, and never reaches for the network.
    if "DREAMWIRE_CACHE" not in os.environ:
        os.environ["DREAMWIRE_CACHE"] = tempfile.mkdtemp(prefix="dreamwire-test-cache-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from dreamwire.models.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_parts(tiny_dir):
    from dreamwire.models.load import load_model

    return load_model(str(tiny_dir), device="cpu", dtype=torch.float32)




@pytest.fixture(scope="session")
def torch_backend(tiny_parts):
    from dreamwire.backends.torch_eager import TorchBackend

    return TorchBackend(tiny_parts)


@pytest.fixture(scope="session")
def prompt_encoder(tiny_parts):
    from dreamwire.engine.prompts import PromptEncoder

    return PromptEncoder(tiny_parts.tokenizer, tiny_parts.text_encoder, "cpu", torch.float32)


@pytest.fixture
def make_engine(tiny_parts, torch_backend, prompt_encoder):
    """``make_engine(params=..., counting=False, **EngineConfig fields)`` at 256x256 by default."""
    from dreamwire.control.params import Params
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    def make(params: Params | dict | None = None, counting: bool = False, model_info=None, **config):
        config.setdefault("width", 256)
        config.setdefault("height", 256)
        be = CountingBackend(torch_backend) if counting else torch_backend
        if isinstance(params, dict):
            params = Params(params)
        return StreamEngine(be, prompt_encoder, model_info or tiny_parts.spec,
                            EngineConfig(**config), params)

    return make


def frames(count: int, f: int = 1, size: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """Distinct smooth test images in [-1, 1], (f,3,size,size) each: deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        low = torch.rand(f, 3, size // 32, size // 32, generator=g)
        out.append(torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear") * 2 - 1)
    return out


def wait_until(cond, timeout: float = 20.0) -> None:
    """Poll ``cond`` until true; fail the test after ``timeout`` seconds (a hang, not a slow machine)."""
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def fail_import(monkeypatch, module: str, error: BaseException) -> None:
    """Make ``import module`` raise ``error`` for the rest of the test (a missing or broken extra)."""
    import builtins

    real = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name == module:
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


def assert_rel_close(out: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4) -> None:
    """Every element within ``rel`` of the reference's scale (max |ref|): how exported graphs are compared."""
    assert out.shape == ref.shape
    scale = ref.abs().max().item()
    err = (out - ref).abs().max().item()
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel} x {scale:.3g}"


@pytest.fixture
def no_network(monkeypatch):
    """Any connect fails the test: what a user without a network (or Hugging Face access) would see."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


XL_SIZE = 128  # the tiny SDXL model's test resolution (test_sdxl.py, test_sdxl_onnx.py)


@pytest.fixture(scope="session")
def xl_dir():
    from dreamwire.models.tiny_sdxl import ensure_tiny_sdxl_model

    return ensure_tiny_sdxl_model()


@pytest.fixture(scope="session")
def xl_parts(xl_dir):
    from dreamwire.models.load import load_model

    return load_model(str(xl_dir), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def xl_backend(xl_parts):
    from dreamwire.backends.torch_eager import TorchBackend

    return TorchBackend(xl_parts)


@pytest.fixture(scope="session")
def xl_prompts(xl_parts):
    from dreamwire.backends.assemble import prompt_encoder

    return prompt_encoder(xl_parts, "cpu", torch.float32, (XL_SIZE, XL_SIZE))
