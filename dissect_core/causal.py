"""Causal effects of units on concepts, measured by the segmenter on regenerated images.

- ``single_unit_effects``: for every unit, the share of each concept's pixels that disappears when
  that unit alone is ablated (set to 0 everywhere) — all concepts from one pass per unit, since
  one segmentation counts every label. This is the causal ranking the brushes use: units ordered by
  their individual ablation effect (a greedy, first-order stand-in for gandissect's optimised ACE).
- ``ablation_effect``: the share of a concept's pixels removed by ablating a unit *set*.
- ``insertion_effect``: at chosen cells where the concept is absent, the share of cells where it
  appears after inserting a unit set at its levels (the painter's "add").

Activations up to the layer are computed once per batch; only the layers after it are re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from dissect_core.gandissect import LayerTable
from dissect_core.resume import Checkpoint
from dissect_core.segmenters import Segmenter
from models.samples import z_tensor

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["single_unit_effects", "rank_units", "ablation_effect", "insertion_effect", "label_counts"]

Progress = Callable[[str, int, int], None]


def label_counts(label_maps: torch.Tensor, labels: int) -> torch.Tensor:
    """(N, C, H, W) label maps -> (N, labels) pixel counts per image (label 0 counted too)."""
    n = label_maps.shape[0]
    flat = label_maps.long().flatten(1) + torch.arange(n, device=label_maps.device)[:, None] * labels
    return torch.bincount(flat.flatten(), minlength=n * labels).view(n, labels)


def _batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


@torch.no_grad()
def single_unit_effects(generator: ProgressiveGenerator, layer: str, segmenter: Segmenter, ids: Sequence[int],
                        seed: int = 1, batch_size: int = 32, units: Sequence[int] | None = None,
                        progress: Progress | None = None, checkpoint: Checkpoint | None = None) -> np.ndarray:
    """(units, labels) share of each label's pixels removed by ablating each unit alone.

    With a ``checkpoint`` the sums are saved as units are done, and a restarted run goes on from there
    (the sums are added in the same order, so the result is the same)."""
    channels = generator.layer_shape(layer)[0]
    units = list(range(channels)) if units is None else list(units)
    n_labels = len(segmenter.labels)
    device = next(generator.parameters()).device
    removed = torch.zeros(channels, n_labels, dtype=torch.float64, device=device)
    base_total = torch.zeros(n_labels, dtype=torch.float64, device=device)
    batches = _batches(ids, batch_size)
    saved = checkpoint.load() if checkpoint is not None else None
    position = 0  # (batch, unit) steps already summed
    if saved is not None:
        removed, base_total = saved["removed"].to(device), saved["base_total"].to(device)
        position = int(saved["position"])
    for b, batch in enumerate(batches):
        if (b + 1) * len(units) <= position:
            continue
        x = generator.forward_to(layer, z_tensor(batch, generator.z_dim, seed, device))
        base = label_counts(segmenter(generator.forward_from(layer, x).clamp(-1, 1)), n_labels).double()
        if b * len(units) >= position:  # this batch's base counts are not in the saved sums yet
            base_total += base.sum(0)
        for step, unit in enumerate(units):
            if b * len(units) + step < position:
                continue
            ablated = x.clone()
            ablated[:, unit] = 0
            counts = label_counts(segmenter(generator.forward_from(layer, ablated).clamp(-1, 1)), n_labels).double()
            removed[unit] += (base - counts).sum(0)
            if checkpoint is not None:
                checkpoint.save({"removed": removed.cpu(), "base_total": base_total.cpu(),
                                 "position": b * len(units) + step + 1})
            if progress is not None:
                progress("causal", b * len(units) + step + 1, len(batches) * len(units))
    effects = removed / base_total.clamp(min=1)
    return effects.cpu().numpy()


def rank_units(table: LayerTable, effects: np.ndarray, concepts: Sequence[str] | None = None) -> None:
    """Store per-concept causal rankings (units by decreasing single-unit ablation effect) in ``table``."""
    for number, (name, _) in enumerate(table.labels):
        if number == 0 or (concepts is not None and name not in concepts):
            continue
        order = np.argsort(-effects[:, number], kind="stable")
        table.causal[name] = [int(u) for u in order]
        table.causal_effect[name] = [float(effects[u, number]) for u in order]


@torch.no_grad()
def ablation_effect(generator: ProgressiveGenerator, layer: str, segmenter: Segmenter, concept_number: int,
                    unit_sets: Sequence[Sequence[int]], ids: Sequence[int], seed: int = 1,
                    batch_size: int = 32) -> list[float]:
    """For each unit set: share of the concept's pixels removed by ablating the set everywhere."""
    device = next(generator.parameters()).device
    n_labels = len(segmenter.labels)
    base_total = 0.0
    removed = [0.0] * len(unit_sets)
    for batch in _batches(ids, batch_size):
        x = generator.forward_to(layer, z_tensor(batch, generator.z_dim, seed, device))
        base = label_counts(segmenter(generator.forward_from(layer, x).clamp(-1, 1)), n_labels)[:, concept_number]
        base_total += float(base.sum())
        for i, units in enumerate(unit_sets):
            ablated = x.clone()
            ablated[:, list(units)] = 0
            after = label_counts(segmenter(generator.forward_from(layer, ablated).clamp(-1, 1)), n_labels)[:, concept_number]
            removed[i] += float((base - after).sum())
    return [r / base_total if base_total else 0.0 for r in removed]


@torch.no_grad()
def insertion_effect(generator: ProgressiveGenerator, layer: str, segmenter: Segmenter, concept_number: int,
                     units: Sequence[int], values: Sequence[float], ids: Sequence[int],
                     choose_regions: Callable[[torch.Tensor], list[tuple[int, int, int, int, int, str]]],
                     seed: int = 1, batch_size: int = 16, min_pixels: int = 1, alpha: float = 1.0
                     ) -> dict[str, dict[str, float]]:
    """Insert ``units`` in layer-grid regions where the concept is absent; success rate per context.

    Inside a region each unit becomes ``x (1 - alpha) + value alpha`` (the painter's rule).
    ``choose_regions(labels)`` gets the unedited label maps (N, C, H, W) of a batch and returns
    ``(image, y0, x0, y1, x1, context)`` rectangles of layer cells (exclusive ends) to paint. A region
    succeeds when, after the edit, the concept covers at least ``min_pixels`` pixels inside it.
    """
    device = next(generator.parameters()).device
    _, h, w = generator.layer_shape(layer)
    unit_index = torch.tensor(list(units), device=device)
    value = torch.tensor(list(values), device=device, dtype=torch.float32)[:, None, None]
    tally: dict[str, list[int]] = {}
    for batch in _batches(ids, batch_size):
        x = generator.forward_to(layer, z_tensor(batch, generator.z_dim, seed, device))
        labels = segmenter(generator.forward_from(layer, x).clamp(-1, 1))
        regions = choose_regions(labels)
        if not regions:
            continue
        edited = x[[r[0] for r in regions]].clone()
        for row, (_, y0, x0, y1, x1, _) in enumerate(regions):
            inside = edited[row, unit_index, y0:y1, x0:x1]
            edited[row, unit_index, y0:y1, x0:x1] = inside * (1 - alpha) + value * alpha
        after = segmenter(generator.forward_from(layer, edited).clamp(-1, 1))
        side_h, side_w = after.shape[-2] // h, after.shape[-1] // w
        for row, (_, y0, x0, y1, x1, context) in enumerate(regions):
            block = after[row, :, y0 * side_h:y1 * side_h, x0 * side_w:x1 * side_w]
            counts = tally.setdefault(context, [0, 0])
            counts[0] += int(int((block == concept_number).sum()) >= min_pixels)
            counts[1] += 1
    return {context: {"regions": n, "success": s / n if n else 0.0} for context, (s, n) in tally.items()}
