"""IQR thresholds: hand-computed information quality ratios, exact level tallies, the chosen level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dissect_core.gandissect import DissectConfig, dissect, upsample_to
from dissect_core.iqr import FALLBACK_INDEX, FRACTIONS, candidate_levels, choose_levels, information_quality_ratio
from dissect_core.segmenters import category_index, load_segmenter
from dissect_core.stats import IoUTally, LevelTally
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor
from models.zoo import list_zoo, load_model
from tests.fake_segmenter import ColourRuleSegmenter


class MedianSplitSegmenter(ColourRuleSegmenter):
    """Like ``ColourRuleSegmenter`` but split at each image's median, so every label is present."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        def above(channel: torch.Tensor) -> torch.Tensor:
            return channel > channel.flatten(1).median(1).values[:, None, None]

        obj = torch.where(above(images[:, 0] - images[:, 1]), 1, 2)
        mat = torch.where(above(images[:, 2]), 3, 0)
        return torch.stack([obj, mat], 1).long()


def iqr_by_hand(n11: int, n10: int, n01: int, n00: int) -> float:
    n = n11 + n10 + n01 + n00
    joint = {(1, 1): n11, (1, 0): n10, (0, 1): n01, (0, 0): n00}
    unit = {1: n11 + n10, 0: n01 + n00}
    label = {1: n11 + n01, 0: n10 + n00}
    mi = sum(c / n * math.log(c * n / (unit[a] * label[b])) for (a, b), c in joint.items() if c)
    je = -sum(c / n * math.log(c / n) for c in joint.values() if c)
    return mi / je


@pytest.mark.parametrize("counts", [(10, 0, 0, 90), (5, 5, 5, 85), (3, 7, 20, 70), (1, 9, 9, 81)])
def test_iqr_matches_hand_computation(counts: tuple[int, int, int, int]) -> None:
    n11, n10, n01, n00 = counts
    iqr, agreement = information_quality_ratio(torch.tensor([[[0, n11]]]), torch.tensor([[n11 + n10]]),
                                               torch.tensor([0, n11 + n01]), sum(counts))
    assert float(iqr[0, 0, 1]) == pytest.approx(iqr_by_hand(*counts), rel=1e-9)
    assert float(agreement[0, 0, 1]) == pytest.approx((n11 + n00) / sum(counts))


def test_iqr_extremes() -> None:
    """Identical masks carry all the information (1); independent masks none (0, here 1 x 1 of 2 x 2)."""
    assert iqr_by_hand(10, 0, 0, 90) == pytest.approx(1.0)
    iqr, _ = information_quality_ratio(torch.tensor([[[0, 25]]]), torch.tensor([[50]]), torch.tensor([0, 50]), 100)
    assert float(iqr[0, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_candidate_levels_leave_the_fraction_above() -> None:
    values = torch.arange(1000, dtype=torch.float32)[None].repeat(2, 1)
    levels = candidate_levels(values)
    assert torch.all(levels[:, 1:] >= levels[:, :-1])  # ascending
    for i, f in enumerate(FRACTIONS):
        above = int((values[0] > levels[0, len(FRACTIONS) - 1 - i]).sum())
        assert above == min(math.ceil(f * 1000), 999), (f, above)
    assert int((values[0] > levels[0, FALLBACK_INDEX]).sum()) == 10  # the top-1 % candidate


def test_level_tally_equals_iou_tally_at_every_level() -> None:
    """The one-pass bucketed counts equal a thresholded IoUTally at each candidate level."""
    g = torch.Generator().manual_seed(3)
    acts = torch.randn(6, 3, 8, 8, generator=g)
    labels = torch.randint(0, 4, (6, 2, 8, 8), generator=g)
    labels[3] = 0  # an image with no labels: its unit pixels are charged to no category
    category_of = [-1, 0, 0, 1]
    levels = candidate_levels(torch.randn(3, 500, generator=g), [0.5, 0.2, 0.05])
    tally = LevelTally(levels, category_of)
    tally.add(acts[:4], labels[:4])
    tally.add(acts[4:], labels[4:])
    counts = tally.at_levels()
    assert int(counts["pixels"]) == 6 * 64
    for k in range(levels.shape[1]):
        reference = IoUTally(3, category_of)
        reference.add(acts > tally.levels[:, k][None, :, None, None], labels)
        assert torch.equal(counts["intersection"][:, k, 1:], reference.intersection[:, 1:])
        assert torch.equal(counts["category_area"][:, k], reference.unit_area)
        assert torch.equal(counts["unit_area"][:, k], (acts > tally.levels[:, k][None, :, None, None]).sum((0, 2, 3)))
    assert torch.equal(counts["label_area"], reference.label_area)
    # a level per unit: the IoU tally read off the calibration counts is the thresholded pass's,
    # with activations tied to the levels (values equal to a level are not above it)
    index = torch.tensor([0, 2, 1])
    tied = acts.clone()
    tied[:, :, :2] = tally.levels[torch.arange(3), index][None, :, None, None]
    tally = LevelTally(levels, category_of)
    tally.add(tied, labels)
    reference = IoUTally(3, category_of)
    reference.add(tied > tally.levels[torch.arange(3), index][None, :, None, None], labels)
    read = tally.iou_tally(index)
    for name in ("intersection", "unit_area", "label_area"):
        assert torch.equal(getattr(read, name), getattr(reference, name)), name
    assert read.images == reference.images == 6
    assert torch.equal(read.iou(), reference.iou())


def test_level_tally_counts_alike_whatever_channels_share_a_bincount(monkeypatch: pytest.MonkeyPatch) -> None:
    import dissect_core.stats as stats

    g = torch.Generator().manual_seed(5)
    acts = torch.randn(3, 4, 8, 8, generator=g)
    labels = torch.randint(0, 5, (3, 3, 8, 8), generator=g)
    levels = candidate_levels(torch.randn(4, 300, generator=g), [0.5, 0.1])
    tallies = []
    for key_bytes in (stats.KEY_BYTES, 1):  # all channels in one bincount; one channel each
        monkeypatch.setattr(stats, "KEY_BYTES", key_bytes)
        tally = LevelTally(levels, [-1, 0, 0, 1, 1])
        tally.add(acts[:1], labels[:1])
        tally.add(acts[1:], labels[1:])
        tallies.append(tally)
    for name in ("label_counts", "unit_counts", "category_counts", "label_area"):
        assert torch.equal(getattr(tallies[0], name), getattr(tallies[1], name)), name
    assert int(tallies[0].label_counts.sum()) == 4 * (3 * 3 * 64 - int((labels == 0).sum()))  # every unit, labelled pixel


def test_iqr_pass_two_counts_only_images_beyond_the_calibration(monkeypatch: pytest.MonkeyPatch,
                                                                 dissect_generator: ProgressiveGenerator) -> None:
    """The calibration's images are in the IoU counts once: pass 2 tallies only the rest, a batch
    that straddles the calibration's end in part, and the table is the shard tasks' (which tally
    every image in pass 2)."""
    import dissect_core.gandissect as gandissect
    from dissect_core.sharded import LocalRunner, dissect_sharded

    monkeypatch.setattr(gandissect, "CALIBRATION_IMAGES", 10)  # batches of 3: sample 9 ends a batch early
    tallied: list[int] = []
    real = gandissect.tally_thresholded
    monkeypatch.setattr(gandissect, "tally_thresholded",
                        lambda tally, acts, *rest, **kw: (tallied.append(acts.shape[0]), real(tally, acts, *rest, **kw)))
    config = DissectConfig(samples=22, batch_size=3, threshold="iqr", label_size=16)
    table = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config)["layer4"]
    assert tallied == [2, 3, 3, 3, 1]  # samples 10-11 of batch 9-11, then 12-21
    monkeypatch.setattr(gandissect, "tally_thresholded", real)
    sharded = dissect_sharded(dissect_generator, ["layer4"], ColourRuleSegmenter(), config, LocalRunner())["layer4"]
    for name in ("iou", "level", "q99", "top_images", "iqr", "iqr_label"):
        np.testing.assert_array_equal(getattr(table, name), getattr(sharded, name), err_msg=name)
    assert float(table.iou.max()) > 0


def test_iqr_dissection_resumes_from_pass_two_before_its_first_batch(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                     dissect_generator: ProgressiveGenerator) -> None:
    """A run stopped after the calibration, before pass 2's first batch was saved, resumes there
    (the calibration's IoU counts are in the checkpoint) to the uninterrupted table."""
    import dissect_core.gandissect as gandissect
    from dissect_core.resume import Checkpoint

    config = DissectConfig(samples=14, batch_size=3, threshold="iqr", label_size=16)
    reference = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config)["layer4"]
    real = gandissect.add_iou_batch

    def stop(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise InterruptedError("stopped before pass 2's first batch")

    monkeypatch.setattr(gandissect, "add_iou_batch", stop)
    checkpoint = Checkpoint(tmp_path / "c.pt", {"run": 1}, every_s=0)
    with pytest.raises(InterruptedError):
        dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config, checkpoint=checkpoint)
    assert checkpoint.load()["done"] == 0
    monkeypatch.setattr(gandissect, "add_iou_batch", real)
    stages: list[str] = []
    resumed = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config,
                      progress=lambda stage, done, total: stages.append(stage), checkpoint=checkpoint)["layer4"]
    assert set(stages) == {"iou"}  # neither pass 1 nor the calibration ran again
    for name in ("iou", "level", "q99", "top_images", "iqr", "iqr_label", "concept_features"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name), err_msg=name)


def test_each_unit_takes_its_most_informative_level() -> None:
    """Unit 0 fires on a broad label at a low level and unit 1 on a small one at a high level: a
    fixed top-1 % mask would miss the broad one; IQR finds both, and the IoU there is exact."""
    n, size = 40, 16
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, 1, size, size, dtype=torch.long)
    labels[:, 0, : size // 2] = 1  # "sky": the top half of every image (50 % of pixels)
    labels[:, 0, 12:14, 3:5] = 2  # "lamp": a 2 x 2 patch (1.6 %)
    acts = torch.rand(n, 2, size, size, generator=g) * 0.1
    acts[:, 0] += (labels[:, 0] == 1) * 1.0
    acts[:, 1] += (labels[:, 0] == 2) * 2.0
    levels = candidate_levels(acts.permute(1, 0, 2, 3).reshape(2, -1))
    tally = LevelTally(levels, [-1, 0, 0])
    tally.add(acts, labels)
    choice = choose_levels(tally.at_levels(), tally.levels, [-1, 0, 0])
    assert choice.label.tolist() == [1, 2]
    # the candidates are quantiles, so the best level may cut a few pixels off the patch
    assert choice.iqr[0] > 0.9 and choice.iqr[1] > 0.9
    assert choice.iou[0, 1] > 0.95 and choice.iou[1, 2] > 0.9
    assert 0.1 < float(choice.level[0]) < 1.1 and 0.1 < float(choice.level[1]) < 2.1


def test_unit_with_no_eligible_label_falls_back_to_top_one_percent() -> None:
    levels = candidate_levels(torch.linspace(-2, -1, 1000)[None])  # all levels negative: none eligible
    tally = LevelTally(levels, [-1, 0])
    tally.add(torch.linspace(-2, -1, 64).view(1, 1, 8, 8), torch.ones(1, 1, 8, 8, dtype=torch.long))
    choice = choose_levels(tally.at_levels(), tally.levels, [-1, 0])
    assert int(choice.index[0]) == FALLBACK_INDEX and int(choice.label[0]) == 0
    assert float(choice.iqr[0]) == 0.0


def test_iqr_dissection_measures_iou_at_the_chosen_levels(dissect_generator: ProgressiveGenerator) -> None:
    generator = dissect_generator
    config = DissectConfig(samples=24, batch_size=7, label_size=16, topk=3, threshold="iqr")
    segmenter = MedianSplitSegmenter()
    table = dissect(generator, ["layer4"], segmenter, config)["layer4"]
    fixed = dissect(generator, ["layer4"], segmenter, DissectConfig(
        samples=24, batch_size=7, label_size=16, topk=3, threshold="quantile"))["layer4"]
    assert table.iqr is not None and table.iqr.shape == (12,)
    # a unit with no eligible (level, label) pair keeps its top-1 % candidate
    assert np.allclose(table.level[table.iqr == 0], fixed.level[table.iqr == 0], rtol=0.05, atol=0.05)
    # IoU is measured at the chosen levels: redo it by hand from the images
    z = z_tensor(range(24), generator.z_dim)
    with torch.no_grad():
        acts = generator.forward_to("layer4", z)
        images = generator.forward_from("layer4", acts)
    labels = segmenter(images.clamp(-1, 1))[..., 1::2, 1::2]
    reference = IoUTally(12, category_index(segmenter))
    reference.add(upsample_to(acts, 16) > torch.from_numpy(table.level)[None, :, None, None], labels)
    np.testing.assert_allclose(table.iou, reference.iou().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        dissect(generator, ["layer4"], segmenter, DissectConfig(samples=4, threshold="best"))


@pytest.mark.skipif("world64" not in list_zoo(), reason="needs the world64 zoo model")
def test_iqr_finds_broad_concepts_on_the_world_gan() -> None:
    """Sky and grass cover a large share of a scene: a top-1 % mask cannot reach IoU 0.04 with them,
    a unit's own informative level can."""
    generator, segmenter = load_model("world64"), load_segmenter("world64/segmenter")
    tables = {mode: dissect(generator, ["layer4"], segmenter, DissectConfig(samples=64, threshold=mode))["layer4"]
              for mode in ("quantile", "iqr")}
    for concept in ("sky", "grass"):
        fixed, iqr = (tables[m].iou[:, tables[m].label_number(concept)].max() for m in ("quantile", "iqr"))
        assert fixed < 0.04 < iqr, (concept, fixed, iqr)
    assert (tables["iqr"].iqr > 0).mean() > 0.5


def _hand_table(iou: np.ndarray, iqr: np.ndarray | None, iqr_label: np.ndarray | None):
    from dissect_core.gandissect import LayerTable

    units = iou.shape[0]
    return LayerTable(
        layer="layer4", shape=(units, 2, 2), labels=[("-", ""), ("sky", "object"), ("blue", "color")],
        categories=["object", "color"], iou=iou, level=np.ones(units), q99=np.ones(units),
        top_images=np.zeros((units, 1), int), top_scores=np.zeros((units, 1)), config=DissectConfig(threshold="iqr"),
        iqr=iqr, iqr_label=iqr_label)


def test_iqr_units_are_labelled_by_their_iqr_label_not_the_best_iou() -> None:
    """gandissect's rule: a unit whose level was chosen for "blue" is a blue unit, with blue's IoU,
    even when sky overlaps its mask more; it is interpretable only if blue passes."""
    iou = np.array([[0, 0.30, 0.05],   # chosen for blue: blue unit (0.05 > 0.04), not sky
                    [0, 0.50, 0.03],   # chosen for blue, blue too weak: not interpretable despite sky 0.5
                    [0, 0.20, 0.01],   # chosen for sky
                    [0, 0.30, 0.10]])  # no eligible pair: falls back to its best IoU (sky), but IQR 0 fails
    table = _hand_table(iou, iqr=np.array([0.2, 0.2, 0.2, 0.0]), iqr_label=np.array([2, 2, 1, 0]))
    assert table.unit_labels.tolist() == [2, 2, 1, 1]
    np.testing.assert_allclose(table.unit_ious, [0.05, 0.03, 0.20, 0.30])
    assert table.interpretable.tolist() == [True, False, True, False]
    assert [table.unit_summary(u)["label"] for u in range(4)] == ["blue", "blue", "sky", "sky"]
    assert table.unit_summary(1)["iou"] == pytest.approx(0.03)
    assert table.detectors_per_category() == {"object": 1, "color": 1}
    assert table.detectors("sky") == [2] and table.detectors("blue") == [0]
    # without IQR levels the best IoU decides, as before
    quantile = _hand_table(iou, iqr=None, iqr_label=None)
    assert quantile.unit_labels.tolist() == [1, 1, 1, 1] and quantile.interpretable.all()


def test_iqr_dissection_stores_the_chosen_labels(dissect_generator: ProgressiveGenerator) -> None:
    generator = dissect_generator
    config = DissectConfig(samples=24, batch_size=7, label_size=16, topk=3, threshold="iqr")
    table = dissect(generator, ["layer4"], MedianSplitSegmenter(), config)["layer4"]
    assert table.iqr_label is not None and table.iqr_label.shape == (12,)
    eligible = table.iqr > 0
    assert (table.iqr_label[eligible] > 0).all() and (table.unit_labels[eligible] == table.iqr_label[eligible]).all()
