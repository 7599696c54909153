"""A dissection run as shard tasks merged by a coordinator gives one process's table."""

from __future__ import annotations

import numpy as np
import pytest

from dissect_core.gandissect import DissectConfig, LayerTable, dissect
from dissect_core.sharded import LocalRunner, dissect_sharded, split
from models.proggan import ProgressiveGenerator
from tests.fake_segmenter import ColourRuleSegmenter


def assert_same_tables(a: LayerTable, b: LayerTable, threshold: str) -> None:
    for name in ("iou", "level", "q99", "top_images", "top_scores", "concept_cells") + (
            ("iqr", "iqr_label") if threshold == "iqr" else ()):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.concept_features, b.concept_features, rtol=1e-6)  # float64 sums, another order


class UnevenRunner(LocalRunner):
    """Shards finish out of order (last first), as on a cluster whose workers differ in speed."""

    workers = 3

    def map(self, fn, shared, shards, cancelled=None):  # type: ignore[no-untyped-def]
        results = list(super().map(fn, shared, shards, cancelled))
        return iter(reversed(results))


def test_split_keeps_every_batch_once_in_order() -> None:
    batches = [[i] for i in range(10)]
    for parts in (1, 3, 4, 10, 25):
        shards = split(batches, parts)
        assert [b for shard in shards for b in shard] == batches
        assert len(shards) == min(parts, 10) and min(map(len, shards)) >= 1
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("threshold", ["quantile", "iqr"])
def test_shards_merged_out_of_order_give_the_one_process_table(dissect_generator: ProgressiveGenerator, threshold: str) -> None:
    config = DissectConfig(samples=22, batch_size=3, threshold=threshold, label_size=16)
    segmenter = ColourRuleSegmenter()
    one = dissect(dissect_generator, ["layer4", "layer2"], segmenter, config)
    steps: list[tuple[str, int, int]] = []
    sharded = dissect_sharded(dissect_generator, ["layer4", "layer2"], segmenter, config, UnevenRunner(),
                              progress=lambda stage, done, total: steps.append((stage, done, total)))
    for layer in ("layer4", "layer2"):
        assert_same_tables(one[layer], sharded[layer], threshold)
    assert float(one["layer4"].iou.max()) > 0  # a table with something in it
    batches = 8  # 22 samples in batches of 3
    total = 2 * batches + (batches if threshold == "iqr" else 0)
    assert steps[-1] == ("iou", total, total) and all(t == total for _, _, t in steps)
    assert [d for _, d, _ in steps] == sorted(d for _, d, _ in steps)


def test_a_cancelled_sharded_dissection_stops(dissect_generator: ProgressiveGenerator) -> None:
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(InterruptedError):
        dissect_sharded(dissect_generator, ["layer4"], ColourRuleSegmenter(), DissectConfig(samples=30, batch_size=3,
                        threshold="quantile", label_size=16), LocalRunner(), cancelled=cancelled)
    assert len(calls) == 3


def test_iqr_pass_two_reuses_the_calibration_forward_passes(dissect_generator: ProgressiveGenerator) -> None:
    """With every sample in the calibration, pass 2 runs neither the dissect_generator nor the segmenter
    again, and the table is the one the shard tasks (which recompute everything) give."""
    class Counting(ColourRuleSegmenter):
        calls = 0

        def __call__(self, images):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().__call__(images)

    config = DissectConfig(samples=22, batch_size=3, threshold="iqr", label_size=16)
    table = dissect(dissect_generator, ["layer4"], Counting(), config)["layer4"]
    assert Counting.calls == 8  # the 8 calibration batches only; pass 2 reused them all
    assert_same_tables(table, dissect_sharded(dissect_generator, ["layer4"], ColourRuleSegmenter(), config,
                                              LocalRunner())["layer4"], "iqr")
