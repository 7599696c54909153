"""Learned insertion: weights that make a painted region become the concept, and the painter's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissect_core.efficacy import painting_contexts
from dissect_core.insertion import (
    ContextPrior,
    InsertionConfig,
    context_regions,
    learn_insertion,
    out_of_context_regions,
    restore_regions,
    score_brush,
    unit_brush,
    window_contexts,
)
from models.proggan import ProgressiveGenerator


def _generator() -> ProgressiveGenerator:
    torch.manual_seed(2)
    generator = ProgressiveGenerator([16, 16, 24, 8, 8])  # 24 units at the 8x8 layer4
    for p in generator.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return generator.eval()


def _segment(images: torch.Tensor) -> torch.Tensor:
    """Label 1 ("vivid") where red exceeds green by 0.9 (about a third of these images' pixels), else 2."""
    return torch.where(images[:, 0] - images[:, 1] > 0.9, 1, 2)


def _vividness(images: torch.Tensor, number: int) -> torch.Tensor:
    """A differentiable score for label 1, in [0, 1]."""
    assert number == 1
    return torch.sigmoid(10 * (images[:, 0] - images[:, 1] - 0.9))


def _region_vividness(generator: ProgressiveGenerator, alpha: np.ndarray, value: np.ndarray, ids: range) -> float:
    """Mean vivid score of a 2x2-cell region painted with ``alpha`` at ``value`` (the painter's rule)."""
    from models.samples import z_tensor

    with torch.no_grad():
        x = generator.forward_to("layer4", z_tensor(ids, 16))
        a = torch.zeros_like(x[:1])
        a[:, :, 3:5, 3:5] = torch.as_tensor(alpha, dtype=torch.float32)[None, :, None, None]
        v = torch.as_tensor(value, dtype=torch.float32)[None, :, None, None]
        images = generator.forward_from("layer4", x * (1 - a) + v * a).clamp(-1, 1)
        return float(_vividness(images, 1)[:, 12:20, 12:20].mean())


def test_learning_raises_the_concept_where_painted_with_few_units() -> None:
    generator = _generator()
    value = np.full(24, 1.5, np.float32)
    start = np.zeros(24, np.float32)  # nothing written: the region as generated
    config = InsertionConfig(samples=48, first=100, steps=60, batch_size=8, lr=0.05, l2=0.005)
    result = learn_insertion(generator, "layer4", _segment, _vividness, 1, 3, value, config,
                             init=start)
    assert result.alpha.shape == (24,) and ((0 <= result.alpha) & (result.alpha <= 1)).all()
    assert result.restore_regions > 0
    assert result.value.shape == (24,) and not np.allclose(result.value, value)  # the vector is learned too
    held_out = range(500, 532)  # samples disjoint from the ones learned on
    before = _region_vividness(generator, start, value, held_out)
    after = _region_vividness(generator, result.alpha, result.value, held_out)
    assert after > before + 0.05, (before, after)
    # the L2 penalty keeps it from writing every unit at full weight
    assert result.alpha.sum() < 0.8 * 24
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_fixed_vector_learns_only_the_weights() -> None:
    generator = _generator()
    value = np.full(24, 1.5, np.float32)
    config = InsertionConfig(samples=32, first=100, steps=3, batch_size=4, learn_value=False, out_of_context_weight=0)
    result = learn_insertion(generator, "layer4", _segment, _vividness, 1, 3, value, config)
    assert np.array_equal(result.value, value) and result.out_of_context_regions == 0
    assert not np.allclose(result.alpha, 0.5)  # started at 0.5 on every unit and moved


def test_region_choice() -> None:
    fractions = torch.zeros(2, 4, 4)
    fractions[0, 1:3, 2:4] = 1.0  # a 2x2 patch of the concept in image 0, none in image 1
    assert restore_regions(fractions, 2) == [(0, 1, 2)]


def test_window_contexts_find_what_a_concept_stands_on() -> None:
    """Concept 1 stands on ground (2) with sky (3) around it in image 0; image 1 has no concept: its
    windows over the ground line are in context, those in open sky or on the bottom edge are foreign."""
    sky, ground, cell = 3, 2, 8
    labels = torch.full((2, 32, 32), sky)
    labels[0, 2 * cell:] = ground
    labels[0, cell:2 * cell, cell:3 * cell] = 1  # two cells of the concept right above the ground line
    labels[1, 3 * cell:] = ground  # image 1: sky down to row 2, ground in row 3
    ctx = window_contexts(labels, (4, 4), 1, 4)
    assert ctx.own.shape == (2, 3, 3)
    assert (int(ctx.own[0, 0, 1]), int(ctx.support[0, 0, 1])) == (sky, ground)
    assert float(ctx.share[0, 0, 1]) == 0.5 and not ctx.absent[0, 0, 1] and ctx.absent[0, 2].all()
    assert int(ctx.support[0, 2, 0]) == 0  # nothing below: the bottom edge
    assert ctx.support[1, 0].tolist() == [sky] * 3 and ctx.support[1, 1].tolist() == [ground] * 3
    prior = ContextPrior.count([(ctx, [(0, 0, 1)])], 4)
    assert prior.windows == 1 and float(prior.pair[sky * 4 + ground]) == 1.0 and float(prior.support[ground]) == 1.0
    rng = np.random.default_rng(0)
    picks = context_regions(ctx, prior, 4, rng)
    assert [p[0] for p in picks] == [1] and picks[0][1] == 1  # image 0 has no free window over the ground line
    for _ in range(10):
        foreign = out_of_context_regions(ctx, prior, 4, rng)
        assert {p[0] for p in foreign} == {0, 1}
        assert all(p[1] in (0, 2) for p in foreign if p[0] == 1) and all(p[1] == 2 for p in foreign if p[0] == 0)


def test_painting_contexts_by_label_layout() -> None:
    names = {"sky": 1, "cloud": 2, "grass": 3, "road": 4, "building": 5, "window": 6, "door": 7, "tree": 8}
    objects = np.full((8, 8), 1)  # 8x8 label map, one pixel per cell of a 8x8 grid
    objects[4:, :] = 3  # grass below
    objects[3:, 4:8] = 5  # a building on the right, its top edge at row 3
    contexts = painting_contexts(objects, 8, concept=7, names=names)
    assert (0, 0) in contexts["sky"] and (6, 0) in contexts["ground"]
    assert (1, 4) in contexts["building_top"] and (4, 5) in contexts["wall"]
    for context, allowed in (("sky", {1}), ("ground", {3}), ("wall", {5})):
        for y, x in contexts[context]:
            assert set(np.unique(objects[y:y + 2, x:x + 2])) <= allowed, (context, y, x)


def test_unit_brush_is_gandissects_top_units_at_twice_q99() -> None:
    q99 = np.arange(50, dtype=np.float32) / 10
    mean = np.full(50, -1.0, np.float32)
    alpha, value = unit_brush([7, 3, 9, 1, 0], q99, mean)  # 4 % of 50 units: the top 2
    assert np.flatnonzero(alpha).tolist() == [3, 7] and alpha[[3, 7]].tolist() == [1.0, 1.0]
    assert value[7] == pytest.approx(1.4) and value[3] == pytest.approx(0.6) and value[0] == -1.0
    assert mean[7] == -1.0  # the caller's vector is not changed
    alpha, value = unit_brush([7, 3, 9], q99, mean, k=3, gain=1.0)
    assert np.flatnonzero(alpha).tolist() == [3, 7, 9] and value[9] == pytest.approx(0.9)


def test_score_brush_tells_a_drawing_brush_from_one_that_writes_nothing() -> None:
    generator = _generator()
    value = np.full(24, 1.5, np.float32)
    config = InsertionConfig(samples=48, first=100, steps=60, batch_size=8, lr=0.05, l2=0.005)
    learned = learn_insertion(generator, "layer4", _segment, _vividness, 1, 3, value, config, init=np.zeros(24))
    nothing = (np.zeros(24, np.float32), value)
    drawn, blank = score_brush(generator, "layer4", _segment, 1, 3, [(learned.alpha, learned.value), nothing],
                               range(600, 632))
    assert blank.in_context == 0.0 and blank.out_of_context == 0.0  # windows where the concept is absent stay so
    assert drawn.in_context > 0.05 and drawn.margin > blank.margin
    assert drawn.regions == blank.regions and drawn.regions[0] > 0


def test_the_smallest_drawing_set_is_the_shortest_prefix_that_draws() -> None:
    from dissect_core.insertion import smallest_drawing_set

    generator = _generator()
    levels = np.full(24, 2.0, np.float32)
    ranked = list(range(23, -1, -1))
    found = smallest_drawing_set(generator, "layer4", _segment, 1, 3, ranked, levels, range(300, 364),
                                 sizes=(1, 2, 4, 8, 16, 24), min_share=0.05, of_brush=0.0)
    assert found is not None
    k = len(found.units)
    assert found.units == ranked[:k] and list(found.tried) == [s for s in (1, 2, 4, 8, 16, 24) if s <= k]
    assert k > 1 and found.tried[k] >= 0.05 and all(v < 0.05 for s, v in found.tried.items() if s < k)
    assert 300 <= found.sample < 364 and found.brush_share is None
    # measured against a whole brush: at least half of what it draws, or nothing qualifies
    brush = (np.ones(24, np.float32), np.full(24, 3.0, np.float32))
    strict = smallest_drawing_set(generator, "layer4", _segment, 1, 3, ranked, levels, range(300, 364),
                                  brush=brush, sizes=(1, 2, 4, 8, 16, 24), min_share=0.05, of_brush=0.5)
    assert strict is not None and strict.brush_share is not None and strict.share >= 0.5 * strict.brush_share
    assert smallest_drawing_set(generator, "layer4", _segment, 1, 3, ranked, levels, range(300, 364),
                                sizes=(1, 2), min_share=1.01) is None
