"""Edit maps: the GAN Dissection rule, stroke compositing, pooling and batching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dissect_core.intervene import HALO, Stroke, apply_edit, batch_edit_maps, brush_units, edit_maps, pool_mask
from dissect_core.nethook import Trace
from models.proggan import ProgressiveGenerator


def full(h: int = 4, w: int = 4, value: float = 1.0) -> torch.Tensor:
    return torch.full((h, w), value)


def test_single_add_and_remove_follow_the_rule() -> None:
    x = torch.arange(2 * 2 * 2, dtype=torch.float32).view(2, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    a, b = edit_maps([Stroke((1,), (10.0,), "add", mask)], (2, 2, 2))
    out = apply_edit(x, a, b)
    assert out[1, 0, 0] == 10.0  # x*(1-1) + 10*1
    assert torch.equal(out[0], x[0]) and torch.equal(out[1].flatten()[1:], x[1].flatten()[1:])
    a, b = edit_maps([Stroke((0, 1), (), "remove", full(2, 2))], (2, 2, 2))
    assert torch.count_nonzero(apply_edit(x, a, b)) == 0


def test_over_compositing_later_stroke_wins() -> None:
    x = torch.ones(1, 1, 1) * 3
    half = full(1, 1, 0.5)
    strokes = [Stroke((0,), (10.0,), "add", half, soft=True), Stroke((0,), (20.0,), "add", half, soft=True)]
    a, b = edit_maps(strokes, (1, 1, 1))
    # A = 1-(1-.5)(1-.5) = .75; B = (10*.5)*(1-.5) + 20*.5 = 12.5
    assert a.item() == pytest.approx(0.75) and b.item() == pytest.approx(12.5)
    assert apply_edit(x, a, b).item() == pytest.approx(3 * 0.25 + 12.5)
    # reference "over" rule on (alpha, value): a = .75, v = (10*.5*.5 + 20*.5)/.75
    v = (10 * 0.5 * 0.5 + 20 * 0.5) / 0.75
    assert apply_edit(x, a, b).item() == pytest.approx(3 * (1 - 0.75) + v * 0.75)
    # draw then remove at alpha 1: removed
    a, b = edit_maps([Stroke((0,), (5.0,), "add", full(1, 1)), Stroke((0,), (), "remove", full(1, 1))], (1, 1, 1))
    assert apply_edit(x, a, b).item() == 0.0


def test_erase_restores_original_activations_under_its_mask() -> None:
    x = torch.randn(3, 4, 4)
    left = torch.zeros(4, 4)
    left[:, :2] = 1
    strokes = [Stroke((0, 2), (9.0, 9.0), "add", full()), Stroke((1,), (), "remove", full()),
               Stroke((), (), "erase", left)]
    a, b = edit_maps(strokes, (3, 4, 4))
    out = apply_edit(x, a, b)
    assert torch.equal(out[:, :, :2], x[:, :, :2])
    assert (out[0, :, 2:] == 9).all() and (out[1, :, 2:] == 0).all() and torch.equal(out[2, :, 2:], torch.full((4, 2), 9.0))


def test_masks_of_any_resolution_are_pooled() -> None:
    mask = torch.zeros(64, 64)
    mask[0, 0] = 1  # one touched pixel
    assert pool_mask(mask, (8, 8))[0, 0] == 1.0  # hard: any touched sub-cell switches the cell on
    assert pool_mask(mask, (8, 8), soft=True)[0, 0] == pytest.approx(1 / 64)
    assert pool_mask(mask, (8, 8)).sum() == 1
    small = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert pool_mask(small, (8, 8))[:4, :4].sum() == 16 and pool_mask(small, (8, 8)).sum() == 16


def test_brush_strength_sets_units_and_values() -> None:
    ranking = list(range(100))[::-1]
    levels = torch.arange(100, dtype=torch.float32)
    units, values = brush_units(ranking, levels, 0.5, layer_units=100)
    assert units == tuple(range(99, 87, -1)) and values[0] == pytest.approx(99.0)
    units, values = brush_units(ranking, levels, 1.0, layer_units=100)
    assert len(units) == 25 and values[0] == pytest.approx(99 * 1.5)
    assert len(brush_units(ranking, levels, 0.0, layer_units=100)[0]) == 1
    with pytest.raises(ValueError, match="strength"):
        brush_units(ranking, levels, 1.5, 100)


def test_bad_strokes() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        Stroke((0,), (1.0,), "paint", full())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one value per unit"):
        Stroke((0, 1), (1.0,), "add", full())
    with pytest.raises(ValueError, match="out of range"):
        edit_maps([Stroke((7,), (1.0,), "add", full())], (3, 4, 4))


def test_batch_of_recipes_in_one_forward_equals_one_by_one() -> None:
    torch.manual_seed(0)
    g = ProgressiveGenerator([8, 8, 8, 8]).eval()
    z = torch.randn(3, 8)
    recipes = [[], [Stroke((0, 1), (2.0, 3.0), "add", full(8, 8))], [Stroke((2,), (), "remove", full(8, 8))]]
    a, b = batch_edit_maps(recipes, g.layer_shape("layer4"))
    with torch.no_grad(), Trace(g, "layer4", edit=lambda x, _: apply_edit(x, a, b)):
        batched = g(z)
    for i, recipe in enumerate(recipes):
        ai, bi = edit_maps(recipe, g.layer_shape("layer4"))
        with torch.no_grad():
            single = g.forward_from("layer4", apply_edit(g.forward_to("layer4", z[i : i + 1]), ai, bi))
        torch.testing.assert_close(batched[i : i + 1], single)
    with torch.no_grad():
        torch.testing.assert_close(batched[0:1], g(z[0:1]))


def test_stroke_alpha_blends_towards_the_values() -> None:
    mask = torch.ones(4, 4)
    a, b = edit_maps([Stroke((0, 1), (2.0, 4.0), "add", mask, alpha=0.25)], (3, 4, 4))
    x = torch.ones(1, 3, 4, 4)
    out = apply_edit(x, a, b)
    assert torch.allclose(out[0, 0], torch.full((4, 4), 0.75 + 0.25 * 2.0))
    assert torch.allclose(out[0, 1], torch.full((4, 4), 0.75 + 0.25 * 4.0))
    assert torch.equal(out[0, 2], x[0, 2])
    with pytest.raises(ValueError, match="alpha"):
        Stroke((0,), (1.0,), "add", mask, alpha=1.5)


def test_brush_edit_adds_the_concept_feature_and_removes_ranked_units(tmp_path: Path) -> None:
    import numpy as np

    from dissect_core.gandissect import DissectConfig, LayerTable
    from dissect_core.intervene import brush_edit

    units = 10
    table = LayerTable(
        layer="layer4", shape=(units, 4, 4), labels=[("-", ""), ("tree", "object"), ("dome", "object")],
        categories=["object"], iou=np.zeros((units, 3)), level=np.zeros(units), q99=np.arange(units, dtype=float),
        top_images=np.zeros((units, 1), int), top_scores=np.zeros((units, 1)), config=DissectConfig(),
        causal={"tree": [7, 3, 1, 0, 2, 4, 5, 6, 8, 9], "dome": [2, 1, 0, 3, 4, 5, 6, 7, 8, 9]},
        concept_features=np.stack([np.zeros(units), np.linspace(1, 2, units), np.zeros(units)]),
        concept_cells=np.array([0, 12, 0]))
    chosen, values, alpha, weights, _ = brush_edit(table, "tree", "add", 0.5)
    assert chosen == tuple(range(units)) and values == pytest.approx(tuple(np.linspace(1, 2, units)))
    assert alpha == 0.75 and brush_edit(table, "tree", "add", 1.0).alpha == 1.0 and weights == ()
    assert table.insertion("tree") == "feature"
    # no feature for dome (it never covered a cell): its top units at q99, scaled by strength
    chosen, values, alpha, _, _ = brush_edit(table, "dome", "add", 0.5)
    assert chosen == (2,) and values == (2.0,) and alpha == 1.0
    chosen, values, alpha, _, _ = brush_edit(table, "tree", "remove", 1.0)
    assert chosen == (7, 3) and values == () and alpha == 1.0
    with pytest.raises(KeyError):
        brush_edit(table, "lamp", "add", 0.5)

    # learned weights: only the weighted units, at the insertion vector; up to s = 0.5 opacity = weight x (0.5 + s),
    # above it (t = 2s - 1) opacity -> 1, values x (1 + t) and a halo around the stroke
    table.insertion_alpha = np.zeros((3, units))
    table.insertion_alpha[1, [4, 8]] = [0.8, 0.3]
    assert table.insertion("tree") == "learned" and table.insertion("dome") == "units"
    edit = brush_edit(table, "tree", "add", 0.5)
    assert edit.units == (4, 8) and edit.values == pytest.approx((np.linspace(1, 2, units)[4], np.linspace(1, 2, units)[8]))
    assert edit.weights == pytest.approx((0.8, 0.3)) and edit.halo == 0
    assert brush_edit(table, "tree", "add", 0.0).weights == pytest.approx((0.4, 0.15))
    strong = brush_edit(table, "tree", "add", 0.75)  # t = 0.5
    assert strong.weights == pytest.approx((0.9, 0.65)) and strong.values == pytest.approx(tuple(1.5 * v for v in edit.values))
    assert strong.halo == pytest.approx(0.5 * HALO) and brush_edit(table, "tree", "add", 1.0).weights == pytest.approx((1.0, 1.0))
    x = torch.zeros(1, units, 4, 4)
    mask = torch.zeros(4, 4)
    mask[1:3, 1:3] = 1
    a, b = edit_maps([edit.stroke("add", mask)], (units, 4, 4))
    out = apply_edit(x, a, b)
    assert out[0, 4, 1, 1] == pytest.approx(0.8 * edit.values[0]) and out[0, 8, 2, 2] == pytest.approx(0.3 * edit.values[1])
    assert out[0, 4, 0, 0] == 0 and out[0, [0, 1, 2, 3, 5, 6, 7, 9]].abs().sum() == 0
    with pytest.raises(ValueError, match="weights"):
        Stroke((0, 1), (1.0, 1.0), "add", mask, weights=(0.5,))
    # the halo: the cells around the painted ones at halo x weight; farther cells untouched
    a, b = edit_maps([strong.stroke("add", mask)], (units, 4, 4))
    assert a[4, 1, 1] == pytest.approx(0.9) and a[4, 0, 0] == pytest.approx(0.9 * 0.5 * HALO)
    small = torch.zeros(4, 4)
    small[0, 0] = 1
    a, _ = edit_maps([strong.stroke("add", small)], (units, 4, 4))
    assert a[4, 1, 1] > 0 and a[4, 2, 2] == 0 and a[4, 0, 3] == 0
    assert strong.stroke("remove", mask).halo == 0  # removal stays inside the mask

    # a learned insertion vector replaces the mean feature; a table saved and loaded keeps it
    table.insertion_value = np.zeros((3, units))
    table.insertion_value[1] = -np.arange(units)
    edit = brush_edit(table, "tree", "add", 0.5)
    assert edit.units == (4, 8) and edit.values == (-4.0, -8.0)
    from dissect_core.tables import load_table, save_table

    save_table(table, tmp_path / "layer")
    loaded = load_table(tmp_path / "layer")
    assert np.array_equal(loaded.insertion_value, table.insertion_value)
    assert brush_edit(loaded, "tree", "add", 0.5) == edit
