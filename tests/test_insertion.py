"""Learned insertion: weights that make a painted region become the concept, and the painter's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissect_core.efficacy import painting_contexts
from dissect_core.insertion import InsertionConfig, context_regions, iou_init, learn_insertion, restore_regions
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
    held_out = range(500, 532)  # samples disjoint from the ones learned on
    before, after = _region_vividness(generator, start, value, held_out), _region_vividness(generator, result.alpha, value, held_out)
    assert after > before + 0.05, (before, after)
    # the L2 penalty keeps it from writing every unit at full weight
    assert result.alpha.sum() < 0.8 * 24
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_region_choice() -> None:
    fractions = torch.zeros(2, 4, 4)
    fractions[0, 1:3, 2:4] = 1.0  # a 2x2 patch of the concept in image 0, none in image 1
    assert restore_regions(fractions, 2) == [(0, 1, 2)]
    context = torch.zeros(2, 4, 4, dtype=torch.long)
    context[:, :, :2] = 3  # label 3 on the left half: where the concept is seen
    prior = torch.zeros(5)
    prior[3] = 1.0
    picks = context_regions(fractions, context, prior, 2, np.random.default_rng(0))
    assert [p[0] for p in picks] == [0, 1]
    for image, y, x in picks:
        assert fractions[image, y:y + 2, x:x + 2].max() == 0 and context[image, y, x] == 3
    assert iou_init(np.array([0.0, 0.2, 0.4])).tolist() == pytest.approx([0.0, 0.25, 0.5])


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
