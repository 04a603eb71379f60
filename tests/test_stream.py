"""Stream batch vs the sequential reference, start-up without warm-up frames, and live parameters."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.live.state import ParamState
from tests.conftest import frames, wait_until
from tests.fakes.backends import ShapeCounting

T_INDEX = {1: (35,), 2: (32, 45), 4: (18, 26, 35, 45)}


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("f", [1, 2])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_stream_equals_sequential_reference(make_engine, n, f):
    """Call k of the stream equals the sequential result for frame k-(n-1); before that, frame 0's."""
    p = Params({"t_index_list": T_INDEX[n]})
    stream = make_engine(p, frames=f, guidance="none")
    seq = make_engine(p, frames=f, guidance="none", batching="sequential")
    inputs = frames(n + 2, f=f, seed=n * 10 + f)
    reference = [seq.step(img).images for img in inputs]
    for k, img in enumerate(inputs):
        out = stream.step(img)
        assert out.delay == n - 1
        close(out.images, reference[max(0, k - (n - 1))])


@pytest.mark.parametrize("guidance", ["self", "onetime", "full"])
def test_stream_equals_sequential_with_guidance(make_engine, guidance):
    p = Params({"t_index_list": T_INDEX[4], "guidance_scale": 2.5, "delta": 0.7})
    stream = make_engine(p, guidance=guidance)
    seq = make_engine(p, guidance=guidance, batching="sequential")
    inputs = frames(6, seed=7)
    reference = [seq.step(img).images for img in inputs]
    for k, img in enumerate(inputs):
        close(stream.step(img).images, reference[max(0, k - 3)])


def test_onetime_with_two_frames_per_call_equals_sequential(make_engine):
    p = Params({"t_index_list": (20, 35, 45), "guidance_scale": 2.5})
    stream = make_engine(p, guidance="onetime", frames=2)
    seq = make_engine(p, guidance="onetime", frames=2, batching="sequential")
    inputs = frames(4, f=2, seed=11)
    reference = [seq.step(img).images for img in inputs]
    for k, img in enumerate(inputs):
        close(stream.step(img).images, reference[max(0, k - 2)])


def test_stream_batch_is_one_unet_call_of_n_times_f(make_engine):
    e = make_engine(Params({"t_index_list": T_INDEX[4]}), frames=2, guidance="none", counting=True)
    for img in frames(3, f=2):
        e.step(img)
    # Priming runs n-1 = 3 calls of f rows once; every engine step after is one call of n*f rows.
    assert e.backend.unet_batches == [2, 2, 2, 8, 8, 8]


def _zero_buffer_rows(backend, engine) -> int:
    """How many UNet input rows look like a zero-filled buffer (pure b*noise): the original's warm-up."""
    c, noise = engine.consts, engine.noise
    hits = 0
    for sample in backend.unet_samples:
        for r in range(min(len(sample), len(c.b))):
            if torch.allclose(sample[r], c.b[r] * noise[r], atol=1e-4):
                hits += 1
    return hits


def test_first_output_is_fully_denoised(make_engine):
    e = make_engine(Params({"t_index_list": T_INDEX[4]}), guidance="none", counting=True)
    seq = make_engine(Params({"t_index_list": T_INDEX[4]}), guidance="none", batching="sequential")
    img = frames(1)[0]
    close(e.step(img).images, seq.step(img).images)
    assert _zero_buffer_rows(e.backend, e) == 0


def test_txt2img_is_seeded_and_stable(make_engine):
    p = Params({"t_index_list": (0, 20, 45), "seed": 5})
    a, b = make_engine(p, mode="txt2img", guidance="none"), make_engine(p, mode="txt2img", guidance="none")
    outs = [a.step(None).images for _ in range(3)]
    close(outs[0], b.step(None).images)
    c = make_engine(p.replace(seed=6), mode="txt2img", guidance="none")
    assert not torch.allclose(outs[0], c.step(None).images)


LIVE_CHANGES = [
    ("prompt", {"prompt": "a cubist portrait"}, "none"),
    ("prompt_blend", {"prompt_blend": (("a forest", 0.3), ("a desert", 0.7))}, "none"),
    ("negative_prompt", {"negative_prompt": "oversaturated"}, "full"),
    ("negative_prompt_onetime", {"negative_prompt": "oversaturated"}, "onetime"),
    ("guidance_scale", {"guidance_scale": 4.0}, "self"),
    ("delta", {"delta": 0.3}, "self"),
    ("seed", {"seed": 1234}, "none"),
    ("seed_blend", {"seed_blend": ((1, 0.5), (2, 0.5))}, "none"),
    ("strength", {"strength": 0.9}, "none"),
    ("t_index_same_n", {"t_index_list": (10, 30, 40)}, "self"),
    ("t_index_grow", {"t_index_list": (5, 15, 25, 35, 45)}, "self"),
    ("t_index_shrink", {"t_index_list": (30,)}, "self"),
    ("steps", {"steps": 4}, "none"),
]


@pytest.mark.parametrize(("label", "change", "guidance"), LIVE_CHANGES, ids=[c[0] for c in LIVE_CHANGES])
def test_live_change_is_visible_next_output_and_never_warm_up(make_engine, label, change, guidance):
    base = Params({"t_index_list": (20, 32, 45), "guidance_scale": 2.0, "strength": 0.5, "steps": 3})
    if "strength" in change or "steps" in change:
        base = base.replace(t_index_list=())
    new = base.replace(**change)
    inputs = frames(9, seed=3)
    c = 4  # change lands before call c

    live = make_engine(base, guidance=guidance, counting=True)
    unchanged = make_engine(base, guidance=guidance)
    fresh = make_engine(new, guidance=guidance)
    n_new = fresh.steps

    for k, img in enumerate(inputs):
        if k == c:
            assert live.update(new)
        calls_before = len(live.backend.unet_batches)
        out = live.step(img).images
        ref_old = unchanged.step(img).images
        ref_new = fresh.step(img).images
        if k >= c:
            # Never stalls: one UNet call per step (growing from n=1 would prime, not the case here).
            assert len(live.backend.unet_batches) - calls_before == 1
        if k == c:
            assert not torch.allclose(out, ref_old, atol=1e-6), "change not visible in the next output"
        if k >= c + n_new - 1:
            # Frames that entered after the change went through every step under the new values.
            close(out, ref_new)
    assert _zero_buffer_rows(live.backend, live) == 0


def test_growing_from_one_step_reuses_the_last_output_without_extra_calls(make_engine):
    base = Params({"t_index_list": (35,)})
    new = base.replace(t_index_list=(20, 35, 45))
    live = make_engine(base, counting=True, guidance="self")
    fresh = make_engine(new, guidance="self")
    inputs = frames(6, seed=9)
    first = live.step(inputs[0]).images
    fresh.step(inputs[0])
    live.update(new)
    for k, img in enumerate(inputs[1:], start=1):
        before = len(live.backend.unet_batches)
        out = live.step(img).images
        ref = fresh.step(img).images
        assert len(live.backend.unet_batches) - before == 1  # no re-priming stall
        if k == 1:
            assert not torch.allclose(out, first, atol=1e-6)  # visible at once
        if k >= 3:
            close(out, ref)  # frames that entered after the change: exactly the new schedule
    assert _zero_buffer_rows(live.backend, live) == 0


def test_prompt_cache_avoids_reencoding(make_engine, prompt_encoder):
    e = make_engine(Params({"prompt": "cache me"}))
    before = prompt_encoder.encodes
    e.update(e.params.replace(prompt="cache me too"))
    e.update(e.params.replace(prompt="cache me"))
    assert prompt_encoder.encodes == before + 1


def test_wrong_input_shape_is_a_clear_error(make_engine):
    e = make_engine()
    with pytest.raises(ValueError, match="expected images of shape"):
        e.step(torch.zeros(1, 3, 128, 128))


@pytest.mark.parametrize("f", [1, 2])
def test_each_output_names_the_inputs_it_was_made_from(make_engine, f):
    """``StepResult.sources`` follows the latents: delay n-1, frame 0 while priming drains, and the
    kept slots when the step count changes (shrink keeps the newest, growing from 1 repeats the last)."""
    e = make_engine(Params({"t_index_list": (20, 32, 45)}), frames=f, guidance="none", width=64, height=64)
    img = frames(1, f=f, size=64)[0]

    def step(k: int) -> tuple:
        return e.step(img, sources=[(k, j) for j in range(f)]).sources

    got = [step(k) for k in range(5)]  # n = 3: delay 2, frame 0 for the first three outputs
    assert [s[0][0] for s in got] == [0, 0, 0, 1, 2]
    assert all([j for _, j in s] == list(range(f)) for s in got)
    e.update(e.params.replace(t_index_list=(32, 45)))  # n 3 -> 2: the newest in-flight frame stays
    assert step(5)[0][0] == 4
    e.update(e.params.replace(t_index_list=(45,)))  # n 2 -> 1: no delay
    assert step(6)[0][0] == 6
    e.update(e.params.replace(t_index_list=(32, 45)))  # n 1 -> 2: the last output fills the new slot
    assert step(7)[0][0] == 6 and step(8)[0][0] == 7
    with pytest.raises(ValueError, match="source tags"):
        e.step(img, sources=[(9, 0)] * (f + 1))


def test_a_skipped_step_repeats_the_sources_of_the_last_output(make_engine):
    e = make_engine(Params({"t_index_list": (45,), "similarity_filter": True, "similarity_threshold": 0.5}),
                    guidance="none", width=64, height=64)
    img = frames(1, size=64)[0]
    first = e.step(img, sources=["a"])
    again = e.step(img, sources=["b"])
    assert not first.skipped and again.skipped and again.sources == ("a",)




def _live_show(engine, f: int) -> None:
    """What a performer does: steps 1 -> 4 -> 2 (and up to the maximum), prompts, negatives, strength."""
    from dreamwire.control.schema import MAX_STEPS

    p = engine.params
    for change in ({"steps": 1}, {"steps": 4}, {"steps": 2}, {"negative_prompt": "fog"}, {"steps": MAX_STEPS},
                   {"prompt": "ink"}, {"strength": 0.9, "steps": 3}, {"t_index_list": (5, 30)}):
        p = p.replace(**change)
        engine.update(p)
        for img in frames(2, f=f, size=64):
            engine.step(img)


@pytest.mark.parametrize(("guidance", "f"), [("self", 1), ("full", 1), ("onetime", 1), ("onetime", 2)])
def test_after_warm_up_a_live_show_makes_no_new_capture(tiny_parts, torch_backend, prompt_encoder, guidance, f):
    """Issue 9 warm-up policy: every shape a live change can reach is run before ready."""
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine
    from dreamwire.engine.warmup import warm_up

    def engine() -> StreamEngine:
        cfg = EngineConfig(width=64, height=64, frames=f, guidance=guidance)
        be = ShapeCounting(torch_backend)
        return StreamEngine(be, prompt_encoder, tiny_parts.spec, cfg, Params({"guidance_scale": 1.5}))

    cold = engine()
    cold.step(frames(1, f=f, size=64)[0])
    _live_show(cold, f)
    assert cold.backend.captures > 3  # without warm-up the show itself triggers captures

    warm = engine()
    steps_done = []
    warm_up(warm, progress=lambda n, total: steps_done.append((n, total)))
    assert steps_done[-1] == (8, 8)
    ready = warm.backend.captures
    _live_show(warm, f)
    assert warm.backend.captures == ready


def test_accepted_blends_always_give_finite_noise_and_embeddings(make_engine):
    lo, hi = 1e-6, 1e6
    for blend in (((1, lo), (2, 0.0)), ((1, hi), (2, hi)), tuple((i, hi) for i in range(16))):
        engine = make_engine(Params({"seed_blend": blend, "t_index_list": (45,)}), width=64, height=64)
        assert np.isfinite(engine.noise.numpy()).all()
    engine = make_engine(Params({"prompt_blend": (("a", lo), ("b", hi)), "t_index_list": (45,)}), width=64, height=64)
    assert np.isfinite(engine.embeddings.cond.hidden.numpy()).all()


def test_the_step_grid_comes_from_the_model(tiny_parts, torch_backend, prompt_encoder):
    """A scheduler with original_inference_steps=25: strength 1 runs, and index 40 is refused up front."""
    import dataclasses

    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    spec = dataclasses.replace(tiny_parts.spec, original_steps=25)
    engine = StreamEngine(torch_backend, prompt_encoder, spec, EngineConfig(width=64, height=64),
                          Params({"strength": 1.0, "steps": 4}))
    engine.step(torch.zeros(1, 3, 64, 64))
    assert max(engine.consts.t_index) < 25
    state = ParamState(engine.params, check=engine.check)
    with pytest.raises(ControlError, match=r"0\.\.24 step grid"):
        state.apply({"t_index_list": (10, 40)})
    assert state.params.t_index_list == ()


def test_a_new_blend_is_encoded_off_the_engine_thread(make_engine, prompt_encoder):
    """Frames keep flowing while a slow blend encodes; the blend lands when it is ready."""
    import threading

    from dreamwire.engine.background import Background

    engine = make_engine(Params({"t_index_list": (45,)}), width=64, height=64)
    gate = threading.Event()
    real = prompt_encoder.encode_blend

    def slow_blend(pairs):
        gate.wait(10)
        return real(pairs)

    engine.prompts = type("P", (), {"encode": prompt_encoder.encode, "encode_blend": staticmethod(slow_blend)})()
    engine.background = Background()
    before = engine.embeddings.cond
    engine.update(engine.params.replace(prompt_blend=(("a", 1.0), ("b", 1.0))))
    img = torch.zeros(1, 3, 64, 64)
    t0 = time.perf_counter()
    for _ in range(3):
        engine.step(img)  # not blocked by the encode
    assert time.perf_counter() - t0 < 9 and engine.embeddings.cond is before
    gate.set()
    wait_until(lambda: not engine.background.pending or engine.background._future.done(), 10)
    engine.step(img)
    assert engine.embeddings.cond is not before
    engine.background.close()
