"""Streaming statistics against small hand-computed cases, and exact merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissect_core.stats import IoUTally, TopImages, TopValues, quantile_rank


def test_quantile_rank_nearest_rank() -> None:
    assert quantile_rank(100, 0.99) == 2  # 99th percentile of 1..100 is 99, the 2nd largest
    assert quantile_rank(1000, 0.99) == 11
    assert quantile_rank(10, 1.0) == 1
    assert quantile_rank(10, 0.0) == 10


def test_top_values_quantile_matches_numpy_definition() -> None:
    values = torch.arange(1, 101, dtype=torch.float32)[:, None].repeat(1, 2)
    values[:, 1] *= -1
    top = TopValues(units=2, k=5)
    for chunk in values[torch.randperm(100)].split(7):
        top.add(chunk)
    q = top.quantile(0.99)
    assert q.tolist() == [99.0, -2.0]
    assert q[0] == np.quantile(np.arange(1, 101), 0.99, method="inverted_cdf")
    with pytest.raises(ValueError, match="needs the top"):
        top.quantile(0.5)


def test_top_values_merge_is_exact() -> None:
    torch.manual_seed(0)
    data = torch.randn(1000, 3)
    whole = TopValues(3, 20)
    whole.add(data)
    a, b = TopValues(3, 20), TopValues(3, 20)
    a.add(data[::2])
    b.add(data[1::2])
    a.merge(b)
    assert a.count == 1000
    assert torch.equal(a.quantile(0.99), whole.quantile(0.99))
    assert torch.equal(a.quantile(0.99), torch.from_numpy(np.quantile(data.numpy(), 0.99, axis=0, method="inverted_cdf")).float())


def test_top_images_ties_are_deterministic() -> None:
    scores = torch.tensor([[1.0], [3.0], [3.0], [2.0]])
    ids = torch.tensor([10, 11, 12, 13])
    a = TopImages(1, 2)
    a.add(scores, ids)
    assert a.indices.tolist() == [[11, 12]]
    b1, b2 = TopImages(1, 2), TopImages(1, 2)
    b1.add(scores[2:], ids[2:])
    b2.add(scores[:2], ids[:2])
    b1.merge(b2)
    assert b1.indices.tolist() == [[11, 12]] and b1.scores.tolist() == [[3.0, 3.0]]


def test_iou_tally_hand_computed() -> None:
    # labels: 0 none, 1 sky (cat 0), 2 tree (cat 0), 3 brick (cat 1); one image 2x2 and one without brick
    category_of = [-1, 0, 0, 1]
    tally = IoUTally(units=1, category_of=category_of)
    masks = torch.tensor([[[[1, 1], [0, 0]]], [[[1, 0], [0, 0]]]], dtype=torch.bool)  # (2, 1, 2, 2)
    labels = torch.tensor([
        [[[1, 1], [2, 2]], [[3, 0], [0, 0]]],   # image 0: object channel, material channel
        [[[1, 2], [2, 2]], [[0, 0], [0, 0]]],   # image 1: no material labels at all
    ])
    tally.add(masks, labels)
    assert tally.intersection.tolist() == [[0, 3, 0, 1]]
    # unit area: objects in both images (2 + 1 = 3); material only in image 0 (2)
    assert tally.unit_area.tolist() == [[3, 2]]
    assert tally.label_area.tolist() == [0, 3, 5, 1]
    iou = tally.iou()[0]
    assert iou[1].item() == pytest.approx(3 / (3 + 3 - 3))  # sky: perfect
    assert iou[2].item() == 0.0
    assert iou[3].item() == pytest.approx(1 / (2 + 1 - 1))  # brick: only image 0 counts the unit area


def test_iou_tally_lite_denominator_charges_categories_under_the_mask() -> None:
    """NetDissect-Lite: a unit's active pixels count for a category only in images where that
    category's labels lie under the mask, not merely somewhere in the image."""
    category_of = [-1, 0, 0, 1]  # sky, tree (object); brick (material)
    masks = torch.tensor([[[[1, 1], [0, 0]]], [[[0, 0], [1, 1]]]], dtype=torch.bool)
    labels = torch.tensor([
        [[[1, 1], [2, 2]], [[0, 0], [3, 3]]],   # image 0: brick only in the bottom row, unit on top
        [[[1, 1], [0, 0]], [[0, 0], [3, 0]]],   # image 1: unit on the bottom row: no object there, brick yes
    ])
    image_rule, lite = IoUTally(1, category_of), IoUTally(1, category_of, denominator="mask")
    image_rule.add(masks, labels)
    lite.add(masks, labels)
    assert image_rule.intersection.tolist() == lite.intersection.tolist() == [[0, 2, 0, 1]]
    assert image_rule.unit_area.tolist() == [[4, 4]]  # both categories appear in both images
    assert lite.unit_area.tolist() == [[2, 2]]  # object under the mask in image 0 only, brick in image 1 only
    assert lite.iou()[0, 3].item() == pytest.approx(1 / (2 + 3 - 1))
    assert image_rule.iou()[0, 3].item() == pytest.approx(1 / (4 + 3 - 1))
    with pytest.raises(ValueError, match="denominator"):
        IoUTally(1, category_of, denominator="pixels")


def test_iou_tally_merges_exactly() -> None:
    torch.manual_seed(1)
    masks = torch.rand(6, 4, 5, 5) > 0.6
    labels = torch.randint(0, 4, (6, 2, 5, 5))
    whole = IoUTally(4, [-1, 0, 0, 1])
    whole.add(masks, labels)
    a, b = IoUTally(4, [-1, 0, 0, 1]), IoUTally(4, [-1, 0, 0, 1])
    a.add(masks[:2], labels[:2])
    b.add(masks[2:], labels[2:])
    a.merge(b)
    assert torch.equal(a.iou(), whole.iou()) and a.images == 6
    with pytest.raises(ValueError, match="do not match"):
        whole.add(masks[:, :3], labels)


def test_concept_features_hand_computed() -> None:
    """A label's mean feature is over the cells it covers at least half of (2x2 pixel cells here)."""
    from dissect_core.stats import ConceptFeatures

    features = torch.arange(2 * 2 * 2, dtype=torch.float32).view(1, 2, 2, 2)  # unit 0: 0..3, unit 1: 4..7
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[0, 0, :2, :2] = 1  # cell (0, 0) fully label 1
    labels[0, 0, 0, 2:] = 1  # cell (0, 1) half label 1 -> counts
    labels[0, 0, 2, 2] = 1  # cell (1, 1) a quarter -> does not count
    labels[0, 0, 2:, :2] = 2  # cell (1, 0) label 2
    tally = ConceptFeatures(units=2, labels=3)
    tally.add(features, labels)
    assert tally.cells.tolist() == [0, 2, 1]
    mean = tally.mean()
    assert mean[1].tolist() == [(0 + 1) / 2, (4 + 5) / 2]
    assert mean[2].tolist() == [2.0, 6.0]
    assert mean[0].tolist() == [0.0, 0.0]  # label 0 (none) is never a concept
    other = ConceptFeatures(units=2, labels=3)
    other.add(features, labels)
    other.merge(tally)
    assert other.cells.tolist() == [0, 4, 2] and torch.equal(other.mean(), mean)
    with pytest.raises(ValueError, match="do not match"):
        tally.add(features, torch.zeros(1, 1, 5, 5, dtype=torch.long))


@pytest.mark.parametrize("denominator", ["image", "mask"])
def test_iou_tally_sparse_and_dense_counts_agree(denominator: str) -> None:
    """Sparse masks (Network Dissection's top 0.5 %) are counted by bincount over active pixels,
    dense ones by one-hot products: the same integers either way."""
    torch.manual_seed(3)
    objects = torch.randint(0, 4, (5, 12, 12))  # labels 1-3: objects, 4-5: materials, one channel each
    materials = torch.randint(0, 3, (5, 12, 12))
    labels = torch.stack([objects, torch.where(materials > 0, materials + 3, 0)], 1)
    category_of = [-1, 0, 0, 0, 1, 1]
    for density in (0.02, 0.5):  # below and above SPARSE_DENSITY
        masks = torch.rand(5, 7, 12, 12) < density
        tally = IoUTally(7, category_of, denominator=denominator)
        tally.add(masks, labels)
        brute_inter = torch.zeros(7, 6, dtype=torch.int64)
        for label in range(1, 6):
            brute_inter[:, label] = (masks & (labels == label).any(1, keepdim=True)).sum((0, 2, 3))
        assert torch.equal(tally.intersection, brute_inter), density
        for u in range(7):
            for c in range(2):
                expected = 0
                for i in range(5):
                    in_cat = torch.zeros(12, 12, dtype=torch.bool)
                    for label in range(1, 6):
                        if category_of[label] == c:
                            in_cat |= (labels[i] == label).any(0)
                    carries = (masks[i, u] & in_cat).any() if denominator == "mask" else in_cat.any()
                    expected += int(masks[i, u].sum()) if carries else 0
                assert int(tally.unit_area[u, c]) == expected


@pytest.mark.parametrize("denominator", ["image", "mask"])
def test_thresholded_tally_skips_silent_maps_exactly(denominator: str) -> None:
    """Only maps whose maximum passes the level are upsampled (NetDissect-Lite's skip): same counts
    as thresholding every upsampled map."""
    from dissect_core.gandissect import tally_thresholded, upsample_to

    torch.manual_seed(5)
    acts = torch.randn(6, 9, 4, 4)
    level = torch.quantile(acts.permute(1, 0, 2, 3).reshape(9, -1), 0.97, dim=1)  # few maps fire
    objects = torch.randint(0, 4, (6, 16, 16))
    materials = torch.randint(0, 3, (6, 16, 16))
    labels = torch.stack([objects, torch.where(materials > 0, materials + 3, 0)], 1)
    category_of = [-1, 0, 0, 0, 1, 1]
    fast, dense = IoUTally(9, category_of, denominator=denominator), IoUTally(9, category_of, denominator=denominator)
    assert (acts.flatten(2).amax(2) > level[None]).float().mean() < 0.5  # the skipping path is taken
    tally_thresholded(fast, acts, level, labels)
    dense.add(upsample_to(acts, 16) > level[None, :, None, None], labels)
    for name in ("intersection", "unit_area", "label_area"):
        assert torch.equal(getattr(fast, name), getattr(dense, name)), name
    assert fast.images == dense.images == 6
