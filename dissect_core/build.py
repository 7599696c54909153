"""Building a layer's dissection table: what the server, the ``dissect`` command and the API job share.

A table the painter can use is a dissection (levels, IoU, concept features) plus the causal ranking
of units (the share of each concept's pixels that ablating each unit alone removes). This is the one
place that does both, reports progress as one fraction, honours cancellation and, given a
directory, checkpoints both passes so a stopped build continues where it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dissect_core.causal import rank_units, single_unit_effects
from dissect_core.gandissect import DissectConfig, LayerTable, dissect
from dissect_core.resume import Checkpoint
from dissect_core.segmenters import Segmenter
from dissect_core.sharded import ShardRunner, dissect_sharded

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["build_layer_tables", "causal_ids", "DISSECT_SHARE"]

DISSECT_SHARE = 0.7
"""Share of the progress bar the dissection passes take; the causal ranking takes the rest."""

BuildProgress = Callable[[str, float], None]
"""``(stage, fraction of the whole build done)``."""


def causal_ids(config: DissectConfig, count: int) -> list[int]:
    """The samples the causal ranking ablates on: the ``count`` ids after the dissected ones."""
    start = config.first + config.samples
    return list(range(start, start + count))


def build_layer_tables(generator: ProgressiveGenerator, layers: Sequence[str], segmenter: Segmenter,
                       config: DissectConfig, causal_samples: int, progress: BuildProgress | None = None,
                       cancelled: Callable[[], bool] | None = None, checkpoint_dir: Path | None = None,
                       identity: dict[str, Any] | None = None, checkpoint_every_s: float = 30.0,
                       runner: ShardRunner | None = None) -> dict[str, LayerTable]:
    """Dissect ``layers`` together, then rank each layer's units by their causal effect on
    ``causal_samples`` samples (0 skips it). ``identity`` names the work in the checkpoints (model
    hash, segmenter): a checkpoint of other work is never resumed from. With a ``runner`` the
    dissection passes run as its shard tasks (a cluster retries a lost shard instead of resuming a
    checkpoint); the causal ranking stays here, checkpointed."""
    base = {"layers": list(layers), "config": dataclasses.asdict(config), "causal": causal_samples, **(identity or {})}

    def check() -> None:
        if cancelled is not None and cancelled():
            raise InterruptedError("table build cancelled")

    def dissect_progress(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, DISSECT_SHARE * done / max(total, 1))

    checkpoint = Checkpoint(checkpoint_dir / "dissect.pt", base, checkpoint_every_s) if checkpoint_dir is not None else None
    if runner is None:
        tables = dissect(generator, list(layers), segmenter, config, dissect_progress, cancelled, checkpoint)
    else:
        tables = dissect_sharded(generator, list(layers), segmenter, config, runner, dissect_progress, cancelled)
    if causal_samples > 0:
        ids = causal_ids(config, causal_samples)
        for number, layer in enumerate(layers):
            def causal_progress(stage: str, done: int, total: int, number: int = number) -> None:
                check()
                if progress is not None:
                    share = (number + done / max(total, 1)) / len(layers)
                    progress(f"causal {layer}", DISSECT_SHARE + (1 - DISSECT_SHARE) * share)

            layer_checkpoint = (Checkpoint(checkpoint_dir / f"causal-{layer}.pt", {**base, "layer": layer}, checkpoint_every_s)
                                if checkpoint_dir is not None else None)
            rank_units(tables[layer], single_unit_effects(generator, layer, segmenter, ids, seed=config.seed,
                                                          progress=causal_progress, checkpoint=layer_checkpoint))
    if progress is not None:
        progress("done", 1.0)
    return tables
