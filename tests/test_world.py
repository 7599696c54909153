"""The scene world: deterministic, labelled exactly, scene classes defined by their objects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dissect_core.datasets.broden import BrodenDataset, BrodenError
from models.world import LABELS, MATERIALS, OBJECTS, SCENES, label_id, render_scene, world_seed
from models.world.broden import encode_label_png, export_broden
from models.world.drawing import Canvas
from models.world.labels import COLORS, color_names, scene_label_id
from models.world.render import WORLDS

N_SCENES = 300


@pytest.fixture(scope="module", params=WORLDS)
def scenes(request: pytest.FixtureRequest) -> list:
    return [render_scene(world_seed("heldout", i), 64, request.param) for i in range(N_SCENES)]


def _present(scene, name: str) -> bool:
    number = label_id(name)
    return bool((scene.objects == number).any() or (scene.materials == number).any())


@pytest.mark.parametrize("world", WORLDS)
def test_deterministic_per_seed(world: str) -> None:
    a, b, c = render_scene(11, 64, world), render_scene(11, 64, world), render_scene(12, 64, world)
    for field in ("image", "objects", "materials", "colors"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.boxes == b.boxes and a.scene == b.scene
    assert not np.array_equal(a.image, c.image)


def test_splits_never_share_seeds() -> None:
    assert world_seed("train", 5) != world_seed("heldout", 5) != world_seed("probe", 5)
    with pytest.raises(ValueError, match="unknown split"):
        world_seed("test", 1)


def test_scene_classes_follow_their_objects(scenes: list) -> None:
    counts = Counter(s.scene_name for s in scenes)
    assert set(counts) == set(SCENES) and min(counts.values()) > N_SCENES * 0.15
    for s in scenes:
        has = lambda name: _present(s, name)
        if s.scene_name == "church":
            assert has("building") and (has("dome") or has("tower"))
        elif s.scene_name == "village":
            assert has("building") and not has("dome") and not has("tower")
        elif s.scene_name == "park":
            assert has("tree") and has("lamp") and not has("building")
        else:
            assert has("water") and has("mountain") and not has("building") and not has("lamp")


def test_every_concept_appears_often_enough(scenes: list) -> None:
    for name in OBJECTS + MATERIALS:
        fraction = np.mean([_present(s, name) for s in scenes])
        assert fraction >= 0.05, f"{name} appears in only {fraction:.1%} of scenes"
    colors_seen = {int(n) for s in scenes for n in np.unique(s.colors)}
    assert len(colors_seen & {label_id(c) for c in COLORS}) >= 8


def test_label_maps_agree_with_pixels(scenes: list) -> None:
    for s in scenes[:50]:
        sky = s.objects == label_id("sky")
        grass = s.objects == label_id("grass")
        assert sky.any() and (grass.any() or (s.objects == label_id("water")).any())
        # sky is blue-ish or greyish, never green; grass is green-dominant on average
        assert s.image[sky][:, 2].mean() > s.image[sky][:, 1].mean() * 0.8
        if grass.sum() > 50:
            g = s.image[grass].astype(int)
            assert g[:, 1].mean() > g[:, 2].mean()
        np.testing.assert_array_equal(s.colors, color_names(s.image))
        # materials only on things that are made of something
        made = np.isin(s.objects, [label_id(n) for n in ("building", "tower", "door", "window", "tree", "lamp", "dome")])
        assert not s.materials[~made].any()


def test_boxes_cover_their_instances(scenes: list) -> None:
    for s in scenes[:100]:
        keys = [b for b in s.boxes if b[5]]
        assert keys, f"{s.scene_name} scene without a key box"
        for label, x0, y0, x1, y1, _ in s.boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            if label:
                assert (s.objects[y0:y1, x0:x1] == label).any()


def test_edges_are_anti_aliased() -> None:
    canvas = Canvas(10)
    win = (slice(0, 10), slice(0, 10))
    cov = canvas.box_cov(win, 0.15, 0.2, 0.55, 0.6)
    assert cov.sum() == pytest.approx(0.4 * 0.4 * 100)
    assert cov[3, 1] == pytest.approx(0.5) and cov[3, 3] == 1.0 and cov[3, 7] == 0.0
    disc = canvas.ellipse_cov(win, 0.5, 0.5, 0.3, 0.3)
    assert disc.sum() == pytest.approx(np.pi * 9, rel=0.03)
    assert ((disc > 0) & (disc < 1)).any()
    tri = canvas.polygon_cov(win, [(0.0, 1.0), (1.0, 1.0), (0.0, 0.0)])
    assert tri.sum() == pytest.approx(50, rel=0.02)


@pytest.mark.parametrize("world", WORLDS)
def test_renders_at_other_sizes(world: str) -> None:
    small, large = render_scene(3, 32, world), render_scene(3, 128, world)
    assert small.image.shape == (32, 32, 3) and large.objects.shape == (128, 128)
    assert small.scene == large.scene
    with pytest.raises(ValueError, match="size"):
        render_scene(3, 4, world)
    with pytest.raises(ValueError, match="unknown world"):
        render_scene(3, 32, "lsun")


def test_framed_world_draws_objects_at_painting_scale() -> None:
    """World v2: a main building fills 25-50 % of the frame in the median building scene; doors and
    domes span at least one cell of an 8x8 edit layer (1/8 of the width), as in LSUN churches."""
    size, cell = 128, 128 // 8
    building_parts = [label_id(n) for n in ("building", "dome", "tower", "door", "window")]
    shares, door_widths, dome_widths, scenes_with = [], [], [], Counter()
    for i in range(200):
        s = render_scene(world_seed("heldout", i), size, "framed")
        if s.scene_name in ("church", "village"):
            shares.append(np.isin(s.objects, building_parts).mean())
        for name, widths in (("door", door_widths), ("dome", dome_widths)):
            for label, x0, _, x1, _, _ in s.boxes:
                if label == label_id(name):
                    widths.append(x1 - x0)
                    scenes_with[name] += 1
    assert 0.25 <= np.median(shares) <= 0.5, np.median(shares)
    assert np.percentile(door_widths, 25) >= cell and np.median(dome_widths) >= 2 * cell
    assert scenes_with["dome"] >= 30 and scenes_with["door"] >= 100


def test_classic_world_is_the_world64_data() -> None:
    """The classic world stays what world64 was trained on: the default and ``classic`` agree."""
    a, b = render_scene(world_seed("train", 5), 64), render_scene(world_seed("train", 5), 64, "classic")
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, render_scene(world_seed("train", 5), 64, "framed").image)


def test_broden_export_round_trip(tmp_path: Path) -> None:
    out = export_broden(tmp_path / "probe", 12, size=32, progress=False)
    data = BrodenDataset(out)
    assert len(data) == 12 and data.categories == ("object", "material", "color", "scene")
    for i in (0, 7):
        scene = render_scene(world_seed("probe", i), 32)
        image, labels = data[i]
        np.testing.assert_array_equal(image, scene.image)
        np.testing.assert_array_equal(labels["object"][0], scene.objects)
        np.testing.assert_array_equal(labels["color"][0], scene.colors)
        assert (labels["scene"][0] == scene_label_id(scene.scene)).all()
    names = {lab.name: lab for lab in data.labels}
    assert names["dome"].category == "object" and names["brick"].category == "material"
    assert len(data.labels) == len(LABELS) - 1


def test_label_png_packing() -> None:
    labels = np.array([[0, 1, 255], [256, 300, 65535]])
    packed = encode_label_png(labels)
    np.testing.assert_array_equal(packed[..., 0].astype(int) + 256 * packed[..., 1].astype(int), labels)


def test_not_a_broden_dir(tmp_path: Path) -> None:
    with pytest.raises(BrodenError, match="missing index.csv"):
        BrodenDataset(tmp_path)
