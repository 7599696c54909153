"""Object rules of the object-level paint bench, on hand-made label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dissect_core.efficacy import painting_contexts
from dissect_core.objects import ObjectMeasure, calibrate, kept_objects, measure, objects_of, painted_object, regions
from models.world.labels import LABEL_BY_NAME

N = {name: label.number for name, label in LABEL_BY_NAME.items()}


def scene() -> np.ndarray:
    """32x32: sky above row 8, a building (rows 8..23, cols 4..27) on road (rows 24..)."""
    labels = np.full((32, 32), N["sky"], np.uint8)
    labels[8:24, 4:28] = N["building"]
    labels[24:, :] = N["road"]
    return labels


def test_regions_are_eight_connected_and_filtered_by_size() -> None:
    labels = scene()
    labels[10:12, 6:8] = N["window"]
    labels[12, 8] = N["window"]  # touches the first only at a corner: same region
    labels[10:12, 20:22] = N["window"]
    labels[15, 15] = N["window"]  # a one-pixel speck
    assert [int(r.sum()) for r in regions(labels, N["window"])] == [5, 4, 1]
    assert len(regions(labels, N["window"], min_area=2)) == 2


def test_a_door_at_the_walls_foot_is_supported_a_floating_one_is_not() -> None:
    labels = scene()
    labels[16:24, 10:14] = N["door"]  # 8 tall, 4 wide, on the road
    labels[10:14, 20:24] = N["door"]  # mid-wall: wall below it
    standing, floating = sorted(objects_of(labels, "door", min_area=4), key=lambda m: -m.area)
    assert standing == ObjectMeasure(area=32, aspect=2.0, fill=1.0, support=1.0)
    assert floating.support == 0.0 and floating.aspect == 1.0


def test_a_dome_rests_on_a_building_and_a_window_sits_in_a_wall() -> None:
    labels = scene()
    labels[4:8, 12:18] = N["dome"]
    labels[12:15, 6:9] = N["window"]
    labels[7:10, 25:28] = N["window"]  # straddles the roof line: part of its ring is sky
    dome = objects_of(labels, "dome", 4)[0]
    assert dome.support == 1.0 and dome.aspect == pytest.approx(4 / 6)
    edge, inside = objects_of(labels, "window", 4)  # in scan order: the one on the roof line first
    assert inside.support == 1.0
    assert 0.0 < edge.support < 1.0


def test_a_ragged_blob_is_less_filled_than_a_box() -> None:
    labels = scene()
    region = np.zeros_like(labels, bool)
    for i in range(8):  # a diagonal staircase
        region[10 + i, 8 + i:10 + i] = True
    labels[region] = N["door"]
    m = measure(labels, region, "door")
    assert m.fill == pytest.approx(16 / (8 * 9))
    with pytest.raises(ValueError):
        measure(labels, np.zeros_like(region), "door")


def calibrated():
    rng = np.random.default_rng(0)
    own = [ObjectMeasure(area=int(a), aspect=float(s), fill=float(f), support=1.0)
           for a, s, f in zip(rng.uniform(100, 200, 100), rng.uniform(1.1, 1.6, 100), rng.uniform(0.8, 1.0, 100))]
    return calibrate("door", own, min_area=6)


def test_rules_keep_most_of_the_gans_own_objects_and_name_what_a_blob_breaks() -> None:
    rules = calibrated()
    assert 100 * 0.9 <= rules.area[0] <= 110 and 190 * 1.1 <= rules.area[1] <= 200 * 1.1
    assert rules.support == 1.0
    assert rules.passes(ObjectMeasure(150, 1.3, 0.9, 1.0))
    blob = ObjectMeasure(area=600, aspect=0.6, fill=0.6, support=0.4)  # wide, ragged, on the wall
    assert rules.failures(blob) == ["size", "aspect", "fill", "support"]
    assert rules.failures(None) == ["missing"]
    with pytest.raises(ValueError, match="too few"):
        calibrate("door", [ObjectMeasure(10, 1, 1, 1)] * 3, min_area=6)


def test_the_painted_object_is_the_largest_region_touching_the_window() -> None:
    labels = scene()
    labels[16:24, 10:14] = N["door"]
    labels[18:24, 20:22] = N["door"]
    window = np.zeros_like(labels, bool)
    window[16:24, 8:24] = True
    assert painted_object(labels, "door", window, 4).area == 32
    window[:] = False
    window[0:4, 0:4] = True
    assert painted_object(labels, "door", window, 4) is None


def test_swallowed_windows_count_against_the_edit_but_those_under_the_brush_do_not() -> None:
    before = scene()
    before[10:13, 6:9] = N["window"]
    before[10:13, 20:23] = N["window"]
    under = np.zeros_like(before, bool)
    under[9:14, 19:24] = True
    after = before.copy()
    after[10:13, 20:23] = N["door"]  # the window under the brush turned into door: not counted
    assert kept_objects(before, after, ["door", "window"], under, 4) == (1, 1)
    after[10:13, 6:9] = N["door"]  # a window elsewhere swallowed
    assert kept_objects(before, after, ["door", "window"], under, 4) == (0, 1)


def test_wall_foot_windows_straddle_the_ground_line() -> None:
    names = {n: N[n] for n in ("sky", "cloud", "grass", "road", "building", "window", "door", "tree")}
    objects = np.full((8, 8), N["sky"])
    objects[6:, :] = N["grass"]
    objects[2:6, 2:8] = N["building"]  # a building whose foot is at row 6
    foot = painting_contexts(objects, 8, concept=N["door"], names=names)["wall_foot"]
    assert (4, 2) in foot and (5, 6) in foot  # just above the ground line, or across it
    assert all(y in (4, 5) and x >= 2 for y, x in foot)  # never the wall's top rows, never beside it
    dabs = painting_contexts(objects, 8, concept=N["door"], names=names, size=1)["wall_foot"]
    assert sorted({y for y, _ in dabs}) == [5]


def test_the_judge_is_another_network_that_labels_at_full_size() -> None:
    from models.judge import JudgeSegmenter
    from models.segmenter import WorldSegmenter

    judge = JudgeSegmenter(width=16).eval()
    labels = judge.segment(torch.zeros(2, 3, 128, 128))
    assert labels.shape == (2, 3, 128, 128) and labels.dtype == torch.long
    shared = set(judge.state_dict()) & set(WorldSegmenter(8).state_dict())
    assert {key.split(".")[0] for key in shared} == {"object_head", "material_head"}  # only the 1x1 heads' names


def roof_scene() -> dict[str, np.ndarray]:
    """8x8 cells: sky in rows 0..3, a building's roof in row 4 from column 2 to 5."""
    from dissect_core.placement import scene_cells

    objects = np.full((64, 64), N["sky"], np.uint8)
    objects[32:, 16:48] = N["building"]
    objects[48:, :] = N["grass"]
    return scene_cells(objects, 8)


def cells_of(*points: tuple[int, int]) -> np.ndarray:
    out = np.zeros((8, 8), bool)
    for y, x in points:
        out[y, x] = True
    return out


def test_a_one_cell_dome_dab_grows_to_the_gans_dome_width_on_the_roof() -> None:
    from dissect_core.placement import footprint

    cells = roof_scene()
    assert np.array_equal(footprint("dome", cells_of((3, 2)), cells), cells_of((3, 2), (3, 3)))  # its neighbour on the roof
    assert np.array_equal(footprint("dome", cells_of((3, 5)), cells), cells_of((3, 4), (3, 5)))  # not the one past the edge
    assert np.array_equal(footprint("dome", cells_of((2, 3)), cells), cells_of((3, 2), (3, 3)))  # one cell high: dropped onto the roof


def test_a_dome_stroke_becomes_one_flat_dome_on_the_roof_line() -> None:
    from dissect_core.placement import footprint

    cells = roof_scene()
    stroke = cells_of((1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3), (3, 4))
    assert np.array_equal(footprint("dome", stroke, cells), cells_of((3, 2), (3, 3)))
    sky_only = cells_of((0, 6), (1, 6))  # nowhere near a roof: painted as drawn
    assert np.array_equal(footprint("dome", sky_only, cells), sky_only)
    assert np.array_equal(footprint("tree", stroke, cells), stroke)  # other brushes are not placed


def test_scene_cells_read_a_real_segmenters_label_names() -> None:
    from dissect_core.placement import scene_cells

    labels = [("-", ""), ("building, edifice", "object"), ("sky", "object"), ("tree", "object")]
    objects = np.ones((8, 8), np.uint8)  # all "building, edifice"
    objects[:4] = 2
    cells = scene_cells(objects, 2, labels)
    assert cells["sky"].tolist() == [[1.0, 1.0], [0.0, 0.0]] and cells["building"].tolist() == [[0.0, 0.0], [1.0, 1.0]]
