"""Latent feedback (issue 19): each new frame's latent pulled toward the last output's clean latent.

The engine's result is checked against a reference built here from the definition: a feedback-free
sequential engine whose encoder returns the blend the test computes from the reference's own earlier
outputs, following the stream's delay (frame k is blended with the latent of output k-1).
"""

from __future__ import annotations

import pytest
import torch

import dreamwire.engine.stream as stream_module
from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.engine.schedule import feedback_latent
from dreamwire.live.state import ParamState
from dreamwire.osc.handler import OscHandler
from dreamwire.osc.wire import build_message
from tests.conftest import frames
from tests.fakes.backends import ShapeCounting

BASE = {"t_index_list": (32, 45), "guidance_scale": 2.0, "delta": 0.8}  # n = 2


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)


class FedEncoder:
    """A backend whose encode returns ``(1-alpha)*encode(images) + alpha*previous`` (set by the test), and
    which keeps every latent it decodes: the reference's clean latents."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.device, self.dtype = inner, "fed", inner.device, inner.dtype
        self.alpha = 0.0
        self.previous: torch.Tensor | None = None
        self.decoded: list[torch.Tensor] = []

    def unet(self, sample, timestep, hidden, **kw):
        return self.inner.unet(sample, timestep, hidden, **kw)

    def encode(self, images):
        z = self.inner.encode(images)
        if self.previous is None:
            return z
        return (1 - self.alpha) * z + self.alpha * self.previous  # the formula, written out

    def decode(self, latents):
        self.decoded.append(latents.clone())
        return self.inner.decode(latents)


def test_the_blend_is_its_formula_row_by_row():
    g = torch.Generator().manual_seed(0)
    z, prev = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    for alpha in (0.0, 0.15, 0.4, 1.0):
        got = feedback_latent(z, prev, alpha)
        for r in range(3):
            want = (1 - alpha) * z[r] + alpha * prev[r]
            assert torch.allclose(got[r], want, rtol=1e-6, atol=0), alpha


def test_zero_feedback_is_bit_identical_and_never_blends(make_engine, monkeypatch):
    def refuse(*args):
        raise AssertionError("the blend ran at latent_feedback = 0")

    monkeypatch.setattr(stream_module, "feedback_latent", refuse)
    plain = make_engine(BASE, frames=2, guidance="self")
    zero = make_engine({**BASE, "latent_feedback": 0.0}, frames=2, guidance="self")
    for img in frames(5, f=2, seed=4):
        assert torch.equal(zero.step(img).images, plain.step(img).images)


@pytest.mark.parametrize(("batching", "f"), [("stream", 1), ("stream", 2), ("sequential", 2)])
def test_feedback_output_equals_the_reference_built_from_the_formula(make_engine, torch_backend, prompt_encoder,
                                                                     tiny_parts, batching, f):
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    alpha = 0.35
    engine = make_engine({**BASE, "latent_feedback": alpha}, frames=f, guidance="self", batching=batching)
    fed = FedEncoder(torch_backend)
    fed.alpha = alpha
    reference = StreamEngine(fed, prompt_encoder, tiny_parts.spec,
                             EngineConfig(width=256, height=256, frames=f, guidance="self", batching="sequential"),
                             Params(BASE))
    inputs = frames(6, f=f, seed=8)
    delay = engine.delay
    results: list[torch.Tensor] = []  # the reference's image for each input frame
    latents: list[torch.Tensor] = []  # ... and its clean latent
    for k, img in enumerate(inputs):
        # Frame k is pulled toward output k-1's latent, which is frame max(0, k-1-delay)'s result.
        fed.previous = latents[max(0, k - 1 - delay)] if k else None
        results.append(reference.step(img).images)
        latents.append(fed.decoded[-1])
        out = engine.step(img).images
        close(out, results[max(0, k - delay)])
    plain = make_engine(BASE, frames=f, guidance="self", batching=batching)
    for img in inputs:
        last_plain = plain.step(img).images
    assert not torch.allclose(last_plain, out, atol=1e-4)  # the feedback did something


@pytest.mark.parametrize("n", [1, 2])
def test_a_live_change_shows_with_the_next_frame_in_and_makes_no_new_shapes(tiny_parts, torch_backend,
                                                                            prompt_encoder, n):
    """The change applies to the next frame in: the very next output at n = 1, and after the n-1 frames
    already in flight (made before it) otherwise, as any new input frame would."""
    from dreamwire.engine.api import EngineConfig
    from dreamwire.engine.stream import StreamEngine

    def engine(params: Params) -> StreamEngine:
        cfg = EngineConfig(width=64, height=64, frames=1, guidance="self")
        return StreamEngine(ShapeCounting(torch_backend), prompt_encoder, tiny_parts.spec, cfg, params)

    state = ParamState(Params({**BASE, "t_index_list": (32, 45)[-n:]}))
    live, unchanged = engine(state.params), engine(state.params)
    inputs = frames(4 + n, size=64, seed=2)
    for img in inputs[:3]:
        live.step(img)
        unchanged.step(img)
    shapes = set(live.backend.shapes)
    version = state.snapshot()[0]
    state.apply({"latent_feedback": 0.3})
    assert state.snapshot()[0] == version + 1
    assert live.update(state.params) == {"latent_feedback"}
    for k, img in enumerate(inputs[3:3 + n]):
        out, ref = live.step(img).images, unchanged.step(img).images
        if k < n - 1:
            close(out, ref)  # made from a frame that entered before the change
        else:
            assert not torch.allclose(out, ref, atol=1e-6), "not visible once the first fed frame is out"
    state.apply({"latent_feedback": 0.9})
    live.update(state.params)
    live.step(inputs[-1])
    assert live.backend.shapes == shapes  # a scalar: no new shape, so no new compile or capture


@pytest.mark.parametrize("bad", [-0.1, 1.5, "much"])
def test_out_of_range_values_are_refused_in_one_line_and_change_nothing(bad):
    with pytest.raises(ControlError) as err:
        Params().replace(latent_feedback=bad)
    assert "latent_feedback" in str(err.value) and "\n" not in str(err.value)
    state = ParamState(Params({"latent_feedback": 0.2}))
    before = state.snapshot()
    with pytest.raises(ControlError):
        state.apply({"latent_feedback": bad, "strength": 0.9})
    assert state.snapshot() == before
    handler = OscHandler(state, dict)
    reply = handler.handle(build_message("/dreamwire/latent_feedback", [bad]))
    assert len(reply.errors) == 1 and state.snapshot() == before


def test_after_reset_the_first_output_has_no_feedback(make_engine):
    p = {**BASE, "latent_feedback": 0.5}
    live = make_engine(p, frames=2, guidance="self")
    inputs = frames(4, f=2, seed=6)
    for img in inputs[:3]:
        live.step(img)
    live.reset()
    fresh = make_engine(p, frames=2, guidance="self")
    assert torch.equal(live.step(inputs[3]).images, fresh.step(inputs[3]).images)
    close(live.step(inputs[0]).images, fresh.step(inputs[0]).images)  # and the next, fed alike, stays equal


def test_txt2img_ignores_feedback(make_engine):
    p = {"t_index_list": (0, 20, 45), "seed": 5}
    plain = make_engine(p, mode="txt2img", guidance="none")
    fed = make_engine({**p, "latent_feedback": 0.5}, mode="txt2img", guidance="none")
    for _ in range(3):
        assert torch.equal(fed.step(None).images, plain.step(None).images)
