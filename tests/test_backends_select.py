"""``--backend`` names: the auto order, clear errors for backends that cannot run, no silent fallback."""

from __future__ import annotations

import pytest
import torch

from dreamwire.backends import select
from dreamwire.backends.errors import BackendUnavailable
from dreamwire.engine.api import Backend
from tests.conftest import fail_import


@pytest.mark.parametrize(
    "device,trt,triton,ort,expected",
    [
        ("cuda", True, False, True, "tensorrt"),
        ("cuda", False, True, True, "compile"),
        ("cuda", False, False, True, "torch+graphs"),  # Windows: no Triton, so no Inductor on CUDA
        ("cpu", True, True, True, "onnxruntime"),  # TensorRT is never picked without a GPU
        ("cpu", False, False, False, "torch"),
    ],
)
def test_auto_order(monkeypatch, device, trt, triton, ort, expected):
    monkeypatch.setattr(select, "tensorrt_importable", lambda: trt)
    monkeypatch.setattr(select, "triton_missing", lambda: None if triton else "ModuleNotFoundError: triton")
    monkeypatch.setattr(select, "onnxruntime_installed", lambda: ort)
    assert select.default_backend(device) == expected


def _on_cuda(parts):
    """The parts as a CUDA model looks to backend choice and construction (nothing runs on a GPU here)."""
    import dataclasses
    from types import SimpleNamespace

    unet = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, config=parts.unet.config)
    return dataclasses.replace(parts, unet=unet)


def test_auto_on_cuda_without_triton_picks_eager_cuda_graphs_and_says_why(tiny_parts, monkeypatch, caplog):
    fail_import(monkeypatch, "tensorrt", ModuleNotFoundError("No module named 'tensorrt'"))
    fail_import(monkeypatch, "triton", ModuleNotFoundError("No module named 'triton'"))
    be = select.make_backend("auto", _on_cuda(tiny_parts))
    assert isinstance(be, Backend) and be.name == "torch+graphs" and be.cuda_graphs
    assert be.captures == 0  # nothing captured until the first call (or the warm-up) of a shape
    assert "Triton cannot be imported" in caplog.text and "torch+graphs" in caplog.text
    from dreamwire.backends.cudagraph import CudaGraphRunner

    runners = list(be._fns.values())
    assert all(isinstance(r, CudaGraphRunner) for r in runners) and len({id(r.pool) for r in runners}) == 1


def test_auto_on_cuda_with_triton_picks_compile(tiny_parts, monkeypatch):
    fail_import(monkeypatch, "tensorrt", ModuleNotFoundError("No module named 'tensorrt'"))
    monkeypatch.setattr(select, "triton_missing", lambda: None)  # as where Triton imports (Linux + CUDA)
    be = select.make_backend("auto", _on_cuda(tiny_parts))
    assert be.name == "compile" and be.cuda_graphs and be.captures == 0


def test_auto_off_grid_size_on_cuda_without_triton_is_not_compile(tiny_parts, monkeypatch):
    from dreamwire.engine.api import EngineConfig

    monkeypatch.setattr(select, "tensorrt_importable", lambda: True)
    fail_import(monkeypatch, "triton", ModuleNotFoundError("No module named 'triton'"))
    be = select.make_backend("auto", _on_cuda(tiny_parts), config=EngineConfig(width=264, height=256))
    assert be.name == "torch+graphs"


def test_torch_graphs_by_name_needs_cuda(tiny_parts):
    with pytest.raises(BackendUnavailable, match="needs --device cuda"):
        select.make_backend("torch+graphs", tiny_parts)


def test_every_backend_counts_captures(tiny_parts, torch_backend):
    assert torch_backend.captures == 0  # eager: neither compiles nor captures
    assert select.make_backend("compile", tiny_parts).captures == 0  # nothing compiled before the first call


def test_auto_on_this_cpu_machine_is_onnxruntime_when_installed():
    pytest.importorskip("onnxruntime")
    assert select.default_backend("cpu") == "onnxruntime"


def test_unknown_backend_lists_the_names(tiny_parts):
    with pytest.raises(ValueError, match="auto, torch, compile, onnxruntime, tensorrt"):
        select.make_backend("tvm", tiny_parts)


def test_torch_backend_by_name(tiny_parts):
    be = select.make_backend("torch", tiny_parts)
    assert isinstance(be, Backend) and be.name == "torch"


def test_onnxruntime_requested_but_missing_names_the_extra(tiny_parts, monkeypatch):
    fail_import(monkeypatch, "onnxruntime", ModuleNotFoundError("No module named 'onnxruntime'"))
    with pytest.raises(BackendUnavailable, match=r"pip install 'dreamwire\[onnx\]'"):
        select.make_backend("onnxruntime", tiny_parts)


def test_tensorrt_on_cpu_model_is_an_error_not_a_fallback(tiny_parts):
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        select.make_backend("tensorrt", tiny_parts)


def test_compile_with_cuda_graphs_needs_cuda(tiny_parts):
    with pytest.raises(ValueError, match="CUDA"):
        select.make_backend("compile", tiny_parts, cuda_graphs=True)


@pytest.mark.slow
def test_compile_backend_one_dynamic_batch_compile_serves_every_batch(tiny_parts, torch_backend):
    """The decoder at batch 2, 3 and 4: one dynamic-batch Inductor compile serves them all.

    ~30 s of Inductor on two CPU cores. With static shapes this was one compile per batch, which made
    warming every step count 1..8 before a show cost minutes per network (batch 1 is dynamo's own
    specialisation: one more compile, so two per network in all).
    """
    be = select.make_backend("compile", tiny_parts)
    assert be.name == "compile" and not be.cuda_graphs
    g = torch.Generator().manual_seed(0)
    for batch in (2, 3, 4):
        z = torch.randn(batch, 4, 16, 16, generator=g)
        torch.testing.assert_close(be.decode(z), torch_backend.decode(z), rtol=1e-4, atol=1e-5)
    assert be.compiles == 1 and be.captures == 1  # no graphs on CPU: captures = compiles


def test_auto_skips_exported_graphs_for_sizes_off_their_grid(tiny_parts, monkeypatch, caplog):
    from dreamwire.engine.api import EngineConfig

    monkeypatch.setattr(select, "onnxruntime_installed", lambda: True)
    be = select.make_backend("auto", tiny_parts, config=EngineConfig(width=264, height=256))
    assert be.name == "torch" and "multiple of 16" in caplog.text


def _sdxl_controlnet_parts(parts):
    """``parts`` as an SDXL model with one ControlNet looks to backend choice (spec.family decides)."""
    import dataclasses

    spec = dataclasses.replace(parts.spec, family="sdxl", pooled_dim=32)
    return dataclasses.replace(parts, spec=spec, controlnets=(object(),), controlnet_sources=("tiny",))


def test_auto_with_sdxl_controlnets_on_cpu_is_torch_and_says_why_in_one_line(tiny_parts, monkeypatch, caplog):
    from dreamwire.engine.api import EngineConfig

    monkeypatch.setattr(select, "onnxruntime_installed", lambda: True)
    name, skipped = select.choose("cpu", _sdxl_controlnet_parts(tiny_parts), EngineConfig())
    assert name == "torch" and [n for n, _, _ in skipped] == ["onnxruntime"]
    caplog.set_level("INFO", logger=select.log.name)
    select._auto(_sdxl_controlnet_parts(tiny_parts), EngineConfig())
    lines = [r.getMessage() for r in caplog.records if r.name == select.log.name]
    assert len(lines) == 1 and lines[0].startswith("backend auto: torch on cpu")
    assert "not onnxruntime" in lines[0] and "SDXL ControlNets" in lines[0]


def test_auto_and_the_fallback_chain_read_the_backend_table(tiny_parts, monkeypatch):
    """One edit to the table changes both: teach onnxruntime SDXL ControlNets, send compile to onnxruntime."""
    import dataclasses

    from dreamwire.backends import catalog
    from dreamwire.backends.assemble import next_backend

    monkeypatch.setattr(select, "onnxruntime_installed", lambda: True)
    parts = _sdxl_controlnet_parts(tiny_parts)
    assert select.choose("cpu", parts)[0] == "torch"
    assert next_backend("compile") == "torch" and next_backend("torch") is None
    table = dict(catalog.TABLE)
    table["onnxruntime"] = dataclasses.replace(table["onnxruntime"], sdxl_controlnet=True)
    table["compile"] = dataclasses.replace(table["compile"], fallback="onnxruntime")
    monkeypatch.setattr(catalog, "TABLE", table)
    monkeypatch.setattr(select, "TABLE", table)
    assert select.choose("cpu", parts)[0] == "onnxruntime"
    assert next_backend("compile") == "onnxruntime"


def test_backend_table_names_every_backend_once_and_its_classes_load():
    from dreamwire.backends import catalog

    assert sorted(catalog.NAMES) == sorted(catalog.TABLE) == sorted(select.BACKENDS)
    for row in catalog.TABLE.values():
        assert row.fallback is None or row.fallback in catalog.TABLE
        if row.name != "tensorrt":  # its module imports; the class needs TensorRT only when built
            assert callable(row.load())


def test_fallback_chain_is_unchanged(monkeypatch):
    from dreamwire.backends.assemble import next_backend

    monkeypatch.setattr(select, "triton_missing", lambda: None)
    assert [next_backend(n) for n in ("tensorrt", "compile", "torch+graphs", "onnxruntime", "torch")] == [
        "compile", "torch", "torch", "torch", None]
    monkeypatch.setattr(select, "triton_missing", lambda: "ModuleNotFoundError: triton")
    assert next_backend("tensorrt") == "torch+graphs"


def test_exported_backends_refuse_sdxl_controlnets_by_name_from_the_table(tiny_parts):
    with pytest.raises(BackendUnavailable, match="SDXL ControlNets yet; use --backend compile, torch, torch"):
        select.make_backend("onnxruntime", _sdxl_controlnet_parts(tiny_parts))


def test_unet_arguments_are_assembled_once_in_the_graph_order():
    """sample, per-row float32 timestep, cond, SDXL's added inputs, then residuals (zeros when none)."""
    from dreamwire.backends import graphs

    config = {"block_out_channels": [8, 16], "layers_per_block": 1}
    x, cond = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    added = {"text_embeds": torch.randn(1, 32), "time_ids": torch.randn(1, 6)}
    args = graphs.unet_args(x, torch.tensor(999), cond, dtype=torch.float32, sdxl=True, unet_config=config,
                            added=added)
    shapes = [tuple(a.shape) for a in args]
    assert shapes[:5] == [(2, 4, 8, 8), (2,), (2, 77, 32), (2, 32), (2, 6)]
    assert shapes[5:] == graphs.residual_shapes(config, 2, 8, 8) and all(not a.any() for a in args[5:])
    assert args[1].dtype == torch.float32 and args[1].tolist() == [999.0, 999.0]
    with pytest.raises(ValueError, match="without ControlNets"):
        graphs.unet_args(x, torch.tensor(1), cond, dtype=torch.float32, sdxl=False, unet_config=None,
                         residuals=args[5:])


def test_sdxl_is_the_specs_family_in_every_backend():
    from pathlib import Path

    src = Path(select.__file__).parent
    for name in ("select.py", "onnxrt.py", "tensorrt.py", "torch_eager.py", "catalog.py"):
        assert "addition_embed_type" not in (src / name).read_text(encoding="utf-8"), name


def _dynamo_limit() -> int:
    import torch._dynamo

    cfg = torch._dynamo.config
    return getattr(cfg, "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit")


def test_compile_backend_leaves_dynamos_global_limit_alone_and_raises_it_only_while_it_runs(tiny_parts):
    from dreamwire.backends.compiled import LimitedCompile

    before = _dynamo_limit()
    be = select.make_backend("compile", tiny_parts, recompile_limit=before + 50)
    assert _dynamo_limit() == before  # building a backend changes nothing process-wide
    seen = []
    run = LimitedCompile(lambda x: seen.append(_dynamo_limit()) or x, be.recompile_limit)
    run(torch.zeros(2))
    assert seen == [before + 50] and _dynamo_limit() == before
    with pytest.raises(ZeroDivisionError):
        LimitedCompile(lambda x: 1 / 0, before + 50)(torch.zeros(1))
    assert _dynamo_limit() == before  # restored on error too
