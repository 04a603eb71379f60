"""Stochastic similarity filter: rates, cap, distinct frames, and zero cost on skip."""

from __future__ import annotations

import math

import torch

from dreamwire.control.params import Params
from dreamwire.engine.similarity import SimilarityFilter, cosine_similarity, skip_probability
from tests.conftest import frames


def test_skip_probability_formula():
    assert skip_probability(1.0, 0.98) == 1.0
    assert skip_probability(0.98, 0.98) == 0.0
    assert skip_probability(0.5, 0.98) == 0.0
    assert math.isclose(skip_probability(0.99, 0.98), 0.5)
    assert skip_probability(0.999, 1.0) == 0.0  # threshold 1 disables skipping


def test_identical_frames_skip_all_but_the_cap():
    f = SimilarityFilter(threshold=0.98, max_skip=10, seed=0)
    x = torch.randn(1, 3, 16, 16)
    decisions = [f.should_skip(x) for _ in range(1 + 11 * 20)]
    # First frame is processed (no reference); then every 11th is forced through by the cap.
    assert decisions[0] is False
    for cycle in range(20):
        chunk = decisions[1 + 11 * cycle: 1 + 11 * (cycle + 1)]
        assert chunk == [True] * 10 + [False]


def test_partial_similarity_skips_at_expected_rate():
    """cos chosen so p = 0.5; over N = 4000 draws the rate is within 4 sigma (= 0.032) of 0.5."""
    x = torch.randn(4096)
    y = x + 0.2 * torch.randn(4096)
    cos = cosine_similarity(x, y)
    threshold = 2 * cos - 1  # p = 1 - (1-cos)/(1-threshold) = 0.5
    f = SimilarityFilter(threshold=threshold, max_skip=10**9, seed=123)
    f.should_skip(x)  # reference
    n = 4000
    skips = 0
    ref_is_x = True
    for _ in range(n):
        # Show the other frame, so the reference (the last processed one) is always at distance cos.
        skipped = f.should_skip(y if ref_is_x else x)
        skips += skipped
        ref_is_x = ref_is_x if skipped else not ref_is_x
    rate = skips / n
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / n), rate


def test_distinct_frames_never_skipped():
    f = SimilarityFilter(threshold=0.98, max_skip=10, seed=0)
    assert not any(f.should_skip(img) for img in frames(50, size=32))


def test_skipped_frame_costs_no_unet_or_vae(make_engine):
    e = make_engine(Params({"similarity_filter": True, "similarity_max_skip": 3, "t_index_list": (32, 45)}),
                    counting=True)
    img = frames(1)[0]
    first = e.step(img)
    calls = (len(e.backend.unet_batches), e.backend.encodes, e.backend.decodes)
    results = [e.step(img) for _ in range(3)]
    assert all(r.skipped for r in results)
    assert (len(e.backend.unet_batches), e.backend.encodes, e.backend.decodes) == calls
    assert all(torch.equal(r.images, first.images) for r in results)
    forced = e.step(img)  # the cap forces the 4th identical frame through
    assert not forced.skipped
    assert len(e.backend.unet_batches) == calls[0] + 1


def test_threshold_change_applies_on_next_frame(make_engine):
    p = Params({"similarity_filter": True, "similarity_max_skip": 100, "t_index_list": (40,)})
    e = make_engine(p)
    img = frames(1)[0]
    e.step(img)
    assert e.step(img).skipped
    e.update(p.replace(similarity_threshold=1.0))
    assert not e.step(img).skipped
    e.update(p.replace(similarity_filter=False))
    assert not e.step(img).skipped
