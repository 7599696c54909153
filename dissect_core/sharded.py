"""GAN dissection as independent shard tasks merged by one coordinator: the same table as one process.

``dissect`` runs its passes in one process (or in lockstep ranks under torchrun). Here each pass is
split into shards of whole one-process batches, each shard is a task that returns its statistics
(``dissect_core.stats``: exact selections and integer sums), and the coordinator merges them as they
arrive. A ``ShardRunner`` decides where tasks run: ``LocalRunner`` in this process, ``RayRunner``
(``server.ray_tasks``) on a Ray cluster, with per-task retries and balancing that follows each
worker's speed. Every sample is computed in the batch a one-process run puts it in, so activations,
levels, IoU and top images are bit-identical; concept features are float64 sums that agree to
rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from dissect_core.gandissect import (
    DissectConfig,
    LayerTable,
    Progress,
    add_calibration_batch,
    add_iou_batch,
    add_level_batch,
    assemble_tables,
    calibration_batches,
    calibration_levels,
    check_config,
    choose_iqr,
    label_size_of,
    layer_shapes,
    new_iou_statistics,
    new_level_statistics,
    one_process_batches,
)
from dissect_core.segmenters import Segmenter, category_index
from dissect_core.stats import LevelTally

if TYPE_CHECKING:
    from models.proggan import ProgressiveGenerator

__all__ = ["ShardRunner", "LocalRunner", "dissect_sharded", "split"]

SHARDS_PER_WORKER = 4
"""Shards per worker and pass: enough for a slow worker's share to move to fast ones."""


class ShardRunner(Protocol):
    """Runs ``fn(*shared, shard)`` for each shard and yields ``(index, result)`` as each finishes."""

    workers: int

    def map(self, fn: Callable[..., Any], shared: tuple, shards: Sequence[Any],
            cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[int, Any]]: ...


class LocalRunner:
    """The shards one after another in this process (the reference the cluster runner must equal)."""

    workers = 1

    def map(self, fn: Callable[..., Any], shared: tuple, shards: Sequence[Any],
            cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[int, Any]]:
        for index, shard in enumerate(shards):
            if cancelled is not None and cancelled():
                raise InterruptedError("dissection cancelled")
            yield index, fn(*shared, shard)


def split(batches: list[list[int]], parts: int) -> list[list[list[int]]]:
    """``batches`` in at most ``parts`` contiguous shards of near-equal size (none empty)."""
    parts = max(1, min(parts, len(batches)))
    size, extra = divmod(len(batches), parts)
    shards, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        shards.append(batches[start:end])
        start = end
    return shards


# -- the tasks: plain functions of plain values, so a worker can run them anywhere ---------------

@torch.no_grad()
def level_shard(generator: ProgressiveGenerator, layers: list[str], config: DissectConfig,
                batches: list[list[int]]) -> dict[str, Any]:
    """Pass 1 on a shard: each layer's top values and top images."""
    tops, images = new_level_statistics(config, layer_shapes(generator, layers), "cpu")
    for batch in batches:
        add_level_batch(generator, layers, config, batch, tops, images)
    return {layer: (tops[layer], images[layer]) for layer in layers}


@torch.no_grad()
def candidates_task(generator: ProgressiveGenerator, layers: list[str], config: DissectConfig,
                    _: None) -> dict[str, torch.Tensor]:
    """IQR mode: the candidate levels (one task; see ``calibration_levels``)."""
    return calibration_levels(generator, layers, config, layer_shapes(generator, layers))


@torch.no_grad()
def calibration_shard(generator: ProgressiveGenerator, segmenter: Segmenter, layers: list[str],
                      config: DissectConfig, candidates: dict[str, torch.Tensor],
                      batches: list[list[int]]) -> dict[str, LevelTally]:
    """IQR mode: counts at every candidate level on a shard of the calibration images."""
    label_size = label_size_of(generator, config, layer_shapes(generator, layers))
    category_of = category_index(segmenter)
    tallies = {layer: LevelTally(candidates[layer], category_of) for layer in layers}
    for batch in batches:
        add_calibration_batch(generator, segmenter, layers, config, batch, label_size, tallies)
    return tallies


@torch.no_grad()
def iou_shard(generator: ProgressiveGenerator, segmenter: Segmenter, layers: list[str], config: DissectConfig,
              levels: dict[str, torch.Tensor], batches: list[list[int]]) -> dict[str, Any]:
    """Pass 2 on a shard: IoU counts and concept features."""
    shapes = layer_shapes(generator, layers)
    tallies, features = new_iou_statistics(shapes, category_index(segmenter), "cpu")
    label_size = label_size_of(generator, config, shapes)
    for batch in batches:
        add_iou_batch(generator, segmenter, layers, config, batch, levels, label_size, tallies, features)
    return {layer: (tallies[layer], features[layer]) for layer in layers}


# -- the coordinator ---------------------------------------------------------------------------

def dissect_sharded(generator: ProgressiveGenerator, layers: Sequence[str], segmenter: Segmenter,
                    config: DissectConfig, runner: ShardRunner, progress: Progress | None = None,
                    cancelled: Callable[[], bool] | None = None) -> dict[str, LayerTable]:
    """``dissect`` with each pass run as shards on ``runner`` and merged here. Progress counts
    finished batches over the three passes; cancelling stops the runner's outstanding tasks."""
    check_config(layers, config)
    layers = list(layers)
    generator = generator.cpu().eval()
    shapes = layer_shapes(generator, layers)
    category_of = category_index(segmenter)
    batches = one_process_batches(config, config.samples)
    calibration = calibration_batches(config) if config.threshold == "iqr" else []
    total = 2 * len(batches) + len(calibration)
    done = 0

    def run(fn: Callable[..., Any], shared: tuple, work: list[list[int]], stage: str) -> Iterator[Any]:
        nonlocal done
        shards = split(work, runner.workers * SHARDS_PER_WORKER)
        for index, result in runner.map(fn, shared, shards, cancelled):
            done += len(shards[index])
            if progress is not None:
                progress(stage, done, total)
            yield result

    # pass 1
    tops, images = new_level_statistics(config, shapes, "cpu")
    for result in run(level_shard, (generator, layers, config), batches, "levels"):
        for layer, (part_tops, part_images) in result.items():
            tops[layer].merge(part_tops)
            images[layer].merge(part_images)
    levels = {layer: tops[layer].quantile(1 - config.quantile) for layer in layers}
    q99 = {layer: tops[layer].quantile(config.insert_quantile) for layer in layers}
    del tops
    iqr: dict = {}
    iqr_labels: dict = {}
    if config.threshold == "iqr":
        candidates = next(runner.map(candidates_task, (generator, layers, config), [None], cancelled))[1]
        merged: dict[str, LevelTally] = {}
        for result in run(calibration_shard, (generator, segmenter, layers, config, candidates), calibration,
                          "calibrate"):
            for layer, tally in result.items():
                if layer in merged:
                    merged[layer].merge(tally)
                else:
                    merged[layer] = tally
        levels, iqr, iqr_labels, _ = choose_iqr({layer: merged[layer] for layer in layers}, category_of)

    # pass 2
    tallies, features = new_iou_statistics(shapes, category_of, "cpu")
    for result in run(iou_shard, (generator, segmenter, layers, config, levels), batches, "iou"):
        for layer, (part_tallies, part_features) in result.items():
            tallies[layer].merge(part_tallies)
            features[layer].merge(part_features)
    return assemble_tables(layers, shapes, segmenter, config, levels, q99, images, tallies, features, iqr, iqr_labels)
