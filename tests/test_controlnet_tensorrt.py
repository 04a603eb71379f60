"""The TensorRT ControlNet path on CPU, against the stand-in ``tensorrt`` (tests/fakes/tensorrt.py).

Builds: with ControlNets, the residual-input UNet and one engine per ControlNet, with profiles that
cover the residual inputs at every size of the profile. Runs: a ControlNet engine returns every
residual, and the residual UNet engine gets zeros when no residuals are given.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from dreamwire.backends.graphs import residual_shapes
from dreamwire.backends.profiles import BatchProfile, ResolutionProfile
from dreamwire.backends.trt_plan import binding_plan, profile_shapes
from tests.fakes import tensorrt as fake_trt
from tests.fakes.cuda import FakeCuda


def _cuda_parts(tiny_parts, *sources):
    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, config=tiny_parts.unet.config)
    return dataclasses.replace(tiny_parts, unet=unet, controlnets=tuple(object() for _ in sources),
                               controlnet_sources=tuple(sources))


def test_residual_unet_profile_covers_every_residual(tiny_parts):
    config = dict(tiny_parts.unet.config)
    res, batch = ResolutionProfile(256, 512, 64, 256), BatchProfile(steps=2, max_steps=4)
    prof = profile_shapes("unet_residual", res, batch, tiny_parts.spec, config).shapes
    names = [n for n in prof if n.endswith("_residual") or n.startswith("down_residual")]
    assert len(names) == len(residual_shapes(config, 1, 8, 8))
    for k, (lo, opt, hi) in enumerate(zip(*(residual_shapes(config, b, r // 8, r // 8) for b, r in
                                             ((batch.minimum, 256), (batch.opt, 256), (batch.maximum, 512))))):
        assert prof[names[k]] == (lo, opt, hi)
    cn = profile_shapes("controlnet1", res, batch, tiny_parts.spec, config).shapes
    assert cn["controlnet_cond"] == ((batch.minimum, 3, 256, 256), (batch.opt, 3, 256, 256),
                                     (batch.maximum, 3, 512, 512))
    assert cn["sample"] == prof["sample"]  # the ControlNet runs on the UNet's rows
    plan = binding_plan("controlnet0", tuple(s[1] for s in cn.values()), tiny_parts.spec, None, config)
    assert [s for _, s in plan.outputs] == residual_shapes(config, batch.opt, 32, 32)


def test_ensure_engines_builds_the_controlnet_graphs(tiny_parts, monkeypatch, tmp_path):
    from dreamwire.backends import trt_build
    from dreamwire.models.controlnet import build_tiny_controlnet

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_trt.make("11.1.0"))
    FakeCuda().install(monkeypatch)
    monkeypatch.setenv("DREAMWIRE_CACHE", str(tmp_path))
    monkeypatch.setattr(trt_build, "gpu_signature", lambda device: "Fake GPU|sm90")
    monkeypatch.setattr(trt_build, "cached_onnx", lambda p, comp, **kw: tmp_path / comp)
    monkeypatch.setattr(trt_build, "mixed_onnx", lambda p, comp, src: src)
    built = {}

    def fake_build(onnx, plan, shapes, **kw):
        built[onnx.name] = shapes
        plan.write_bytes(b"plan-" + onnx.name.encode())

    monkeypatch.setattr(trt_build, "build_plan", fake_build)
    nets = [str(build_tiny_controlnet(tmp_path / f"cn{s}", seed=s)) for s in (1, 2)]
    spec = trt_build.EngineSpec(ResolutionProfile(256, 512, 64, 256), BatchProfile(steps=2, max_steps=4))
    plans = trt_build.ensure_engines(_cuda_parts(tiny_parts, *nets), spec)
    assert set(plans) == set(built) == {"unet_residual", "encoder", "decoder", "controlnet0", "controlnet1"}
    assert "mid_residual" in built["unet_residual"].shapes and "controlnet_cond" in built["controlnet0"].shapes
    assert plans["controlnet0"] != plans["controlnet1"]  # each ControlNet its own engine


def _kernel(config: dict):
    """ControlNet engines write residual i = i + 1; the residual UNet writes sample + sum of residual means."""
    count = len(residual_shapes(config, 1, 8, 8))

    def run(context) -> None:
        shapes = context.shapes
        if "controlnet_cond" in shapes:
            b, _, h, w = shapes["sample"]
            for i, s in enumerate(residual_shapes(config, b, h, w)):
                name = "mid_residual" if i == count - 1 else f"down_residual_{i}"
                fake_trt.tensor_at(context.addresses[name], s).fill_(i + 1)
            return
        x = fake_trt.tensor_at(context.addresses["sample"], shapes["sample"])
        total = sum(fake_trt.tensor_at(context.addresses[n], s).mean() for n, s in shapes.items() if "residual" in n)
        fake_trt.tensor_at(context.addresses["model_output"], shapes["sample"]).copy_(x + total)

    return run


def _infer(config):
    """The ControlNet engine's residual shapes as TensorRT infers them from the graph, else SD's shapes."""

    def infer(inputs, name):
        if "residual" not in name:
            return fake_trt.infer_sd_shapes(inputs, name)
        b, _, h, w = inputs["sample"]
        shapes = residual_shapes(config, b, h, w)
        return shapes[-1] if name == "mid_residual" else shapes[int(name.rsplit("_", 1)[1])]

    return infer


def test_backend_runs_controlnet_and_residual_unet_engines(tiny_parts, monkeypatch, tmp_path):
    from dreamwire.backends import tensorrt as trt_mod

    config = dict(tiny_parts.unet.config)
    cuda = FakeCuda(current=5).install(monkeypatch)
    trt = fake_trt.make("11.1.0", cuda=cuda, kernel=_kernel(config), infer=_infer(config))
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"plan")
    names = ("unet_residual", "encoder", "decoder", "controlnet0")
    monkeypatch.setattr(trt_mod, "ensure_engines", lambda parts, spec: dict.fromkeys(names, plan))
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, device=None, **k: empty(*a, **k))
    be = trt_mod.TensorRTBackend(_cuda_parts(tiny_parts, "tiny"), profile=ResolutionProfile(256, 512, 64, 256))
    assert set(be._run) == set(names)
    be.device, be.dtype = torch.device("cpu"), torch.float32  # the fake engines run on the CPU
    x, t, cond = torch.randn(2, 4, 32, 32), torch.tensor([999, 500]), torch.randn(2, 77, 32)
    res = be.controlnet(0, x, t, cond, torch.rand(2, 3, 256, 256))
    assert [tuple(r.shape) for r in res] == residual_shapes(config, 2, 32, 32)
    assert [r.unique().tolist() for r in res] == [[i + 1.0] for i in range(len(res))]
    torch.testing.assert_close(be.unet(x, t, cond), x)  # no residuals: zeros go in
    torch.testing.assert_close(be.unet(x, t, cond, residuals=res), x + sum(range(1, len(res) + 1)))


def test_sdxl_controlnets_are_refused_with_the_fix(tiny_parts, monkeypatch):
    from dreamwire.backends import tensorrt as trt_mod
    from dreamwire.backends.errors import BackendUnavailable

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_trt.make("11.1.0"))
    parts = _cuda_parts(tiny_parts, "tiny")
    parts.spec = dataclasses.replace(parts.spec, family="sdxl", pooled_dim=32)  # "is it SDXL?" is the spec's word
    with pytest.raises(BackendUnavailable, match="SDXL ControlNets"):
        trt_mod.TensorRTBackend(parts, profile=ResolutionProfile(256, 512, 64, 256))
