"""GAN Dissection: match the units of generator layers with the concepts a segmenter sees.

Two passes over generated samples (ids ``first .. first+samples-1`` of the seed stream):

1. **Levels.** Run the generator only up to the retained layers; keep each unit's exact top
   activation values (all positions, all images) and its top images by spatial maximum. The unit's
   threshold ``level`` is its ``1 - quantile`` quantile (top 1 % of activations by default, as in the
   newer gandissect pipeline) and ``q99`` the value an insertion writes.
2. **IoU.** Run the whole generator, label its images with the segmenter, upsample each unit's
   activation map bilinearly (pixel-centre aligned) to the label grid, threshold at ``level``,
   and tally intersections with every label and the unit's area per category (charged only in
   images that carry that category). IoU = I / (unit area + label area − I).

With ``threshold="iqr"`` (gandissect's GAN mode, ``dissect_core.iqr``) a calibration step on the
run's first 1,000 images (fewer for short runs) sets 100 candidate levels per unit (quantiles of
those images' activations, at most 2^24 values per layer), tallies the counts at every candidate,
and gives each unit the level with the highest information quality ratio; pass 2 then measures IoU
at that level over all samples. Broad concepts (sky, grass) need it: a
top-1 % mask cannot reach IoU 0.04 with a concept covering a quarter of the image.

Both passes are sums or exact selections, so ``torch.distributed`` ranks (each taking every
``world``-th sample) all-reduce their statistics into the table one process computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from dissect_core.crops import active_pixels, crops_apply
from dissect_core.iqr import FRACTIONS, candidate_levels, choose_levels
from dissect_core.nethook import Trace
from dissect_core.resume import Checkpoint
from dissect_core.segmenters import Segmenter, category_index
from dissect_core.stats import ConceptFeatures, IoUTally, LevelTally, TopImages, TopValues, quantile_rank
from models.samples import z_tensor

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["DissectConfig", "LayerTable", "dissect", "upsample_to", "interpretable_fraction", "tally_thresholded"]

THRESHOLDS = ("quantile", "iqr")
CALIBRATION_IMAGES = 1000
"""IQR mode: images whose activations give the candidate levels (fewer when a layer is large)."""
CALIBRATION_VALUES = 1 << 24
MIN_IQR = 0.01
"""IQR mode: a unit is interpretable only when its chosen label also carries this much information
(gandissect's ``iqr_threshold``); with per-unit levels almost every unit finds some IoU > 0.04."""
CHUNK_VALUES = 1 << 21
"""Largest upsampled temporary (values) a dissection step makes at once. Temporaries beyond glibc's
largest heap threshold (32 MB) are mapped and unmapped on every use, each page faulting anew: at
16 images of a 512-unit layer on a 64 px grid that was a third of the run in kernel time."""
REUSE_BYTES = 512 << 20
"""IQR mode: memory pass 2 may use to keep the calibration's activations and labels (about 160 KB
an image for a 512-unit 8x8 layer on a 64 px label grid, so 1,000 images fit)."""
MAX_TOP_VALUES = 40_000_000
"""Largest number of floats (units x kept values) pass 1 may hold; beyond it, use fewer samples."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DissectConfig:
    samples: int = 2000
    seed: int = 1
    first: int = 0
    batch_size: int = 32
    quantile: float = 0.01
    """Top fraction of activations that defines a unit's mask (threshold = its 1 - quantile quantile)."""
    insert_quantile: float = 0.99
    topk: int = 12
    label_size: int | None = None
    """Side of the label grid IoU is computed on; default half the image size (as gandissect)."""
    min_iou: float = 0.04
    threshold: str = "iqr"
    """``iqr`` (the default everywhere: CLI, server, jobs API, as gandissect for GANs): each unit's most
    informative level; ``quantile``: every unit at its top-``quantile`` level."""


@dataclass
class LayerTable:
    """One layer's dissection: per-unit levels, labels and IoUs, per-concept rankings."""

    layer: str
    shape: tuple[int, int, int]
    labels: list[tuple[str, str]]
    categories: list[str]
    iou: np.ndarray  # (units, labels)
    level: np.ndarray  # (units,)
    q99: np.ndarray  # (units,)
    top_images: np.ndarray  # (units, k) sample ids
    top_scores: np.ndarray  # (units, k)
    config: DissectConfig
    causal: dict[str, list[int]] = field(default_factory=dict)
    """Concept -> units ranked by causal effect (filled by ``causal.rank_units``)."""
    causal_effect: dict[str, list[float]] = field(default_factory=dict)
    iqr: np.ndarray | None = None
    """(units,) information quality ratio of each unit's chosen level and label (IQR mode only)."""
    iqr_label: np.ndarray | None = None
    """(units,) the label each unit's level was chosen for (IQR mode; 0 when none was eligible). In
    IQR mode this *is* the unit's label, as in gandissect, even when another label has a higher IoU
    at that level."""
    concept_features: np.ndarray | None = None
    """(labels, units) mean feature where each label covers >= half a cell: what a brush adds."""
    concept_cells: np.ndarray | None = None
    """(labels,) how many cells that mean is over (0: the label never covered a cell)."""
    gallery: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Concept -> its strongest single drawing unit (``insertion.best_single_unit``): unit, share,
    sample, cell."""
    insertion_alpha: np.ndarray | None = None
    """(labels, units) learned per-unit insertion weights (``dissect_core.insertion``); a row of
    zeros means none were learned for that label."""
    insertion_value: np.ndarray | None = None
    """(labels, units) the learned insertion vectors the weights write (absent in tables learned
    before vectors were: those write the concept's mean feature)."""

    def concept_feature(self, concept: str) -> np.ndarray | None:
        """The concept's insertion vector, or None when the table has none for it."""
        if self.concept_features is None or self.concept_cells is None:
            return None
        number = self.label_number(concept)
        return self.concept_features[number] if self.concept_cells[number] > 0 else None

    def insertion_vector(self, concept: str) -> np.ndarray | None:
        """What a learned brush writes: the learned vector when the table has one, else the mean feature."""
        number = self.label_number(concept)
        if self.insertion_value is not None and self.insertion_value[number].any():
            return self.insertion_value[number]
        return self.concept_feature(concept)

    def insertion(self, concept: str) -> str:
        """How a brush adds this concept: ``learned`` (learned per-unit weights at its learned vector),
        ``feature`` (its mean feature on every unit) or ``units`` (ranked units at their q99 level)."""
        if self.concept_feature(concept) is None:
            return "units"
        if self.insertion_alpha is not None and self.insertion_alpha[self.label_number(concept)].any():
            return "learned"
        return "feature"

    @property
    def units(self) -> int:
        return self.shape[0]

    @property
    def unit_labels(self) -> np.ndarray:
        """(units,) each unit's label number: its IQR-chosen label in IQR mode (where one was eligible),
        else the label with the highest IoU."""
        best = self.iou.argmax(1)
        if self.iqr_label is None:
            return best
        return np.where(self.iqr_label > 0, self.iqr_label, best)

    @property
    def unit_ious(self) -> np.ndarray:
        """(units,) IoU of each unit with its own label (``unit_labels``)."""
        return self.iou[np.arange(self.units), self.unit_labels]

    @property
    def interpretable(self) -> np.ndarray:
        """(units,) bool: IoU with the unit's label above ``min_iou`` (and, with IQR levels, that same
        label's IQR above ``MIN_IQR``: gandissect's rule). The one definition every count, report
        and page uses."""
        mask = self.unit_ious > self.config.min_iou
        if self.iqr is not None:
            mask &= self.iqr > MIN_IQR
        return mask

    def unit_summary(self, unit: int) -> dict[str, Any]:
        """The unit's label, category and IoU, best label per category, levels, top images."""
        row = self.iou[unit]
        label = int(self.unit_labels[unit])
        per_category = {}
        for category in self.categories:
            numbers = [n for n, (_, c) in enumerate(self.labels) if c == category]
            if numbers:
                n = max(numbers, key=lambda k: row[k])
                per_category[category] = {"label": self.labels[n][0], "iou": float(row[n])}
        return {
            "unit": unit,
            "label": self.labels[label][0],
            "category": self.labels[label][1],
            "iou": float(row[label]),
            "interpretable": bool(self.interpretable[unit]),
            "level": float(self.level[unit]),
            "q99": float(self.q99[unit]),
            **({"iqr": float(self.iqr[unit])} if self.iqr is not None else {}),
            "top_images": [int(i) for i in self.top_images[unit]],
            "per_category": per_category,
        }

    def detectors(self, concept: str) -> list[int]:
        """Interpretable units labelled ``concept``, best IoU first."""
        number = self.label_number(concept)
        units = np.flatnonzero(self.interpretable & (self.unit_labels == number))
        return [int(u) for u in units[np.argsort(-self.iou[units, number], kind="stable")]]

    def concept_ranking(self, concept: str) -> list[int]:
        """Units ordered for a brush: by causal effect when measured, else by IoU (best first)."""
        if concept in self.causal:
            return list(self.causal[concept])
        number = self.label_number(concept)
        return [int(u) for u in np.argsort(-self.iou[:, number], kind="stable")]

    def label_number(self, concept: str) -> int:
        for number, (name, _) in enumerate(self.labels):
            if name == concept and number > 0:
                return number
        raise KeyError(f"unknown concept {concept!r}")

    def detectors_per_category(self) -> dict[str, int]:
        """Count of interpretable units whose label is in each category (one per unit)."""
        counts = dict.fromkeys(self.categories, 0)
        labels = self.unit_labels
        for unit in np.flatnonzero(self.interpretable):
            counts[self.labels[int(labels[unit])][1]] += 1
        return counts


def upsample_to(activations: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, pixel-centre aligned upsampling (the border value extends past the edge)."""
    if activations.shape[-1] == size:
        return activations
    return F.interpolate(activations, size=(size, size), mode="bilinear", align_corners=False)


def chunk_images(units: int, size: int) -> int:
    """Images per chunk so that one chunk's upsampled maps hold at most ``CHUNK_VALUES`` values."""
    return max(1, CHUNK_VALUES // max(units * size * size, 1))


def upsampled_chunks(activations: torch.Tensor, labels: torch.Tensor,
                     chunk: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(activations upsampled to the label grid, labels), ``chunk`` images at a time (default:
    ``chunk_images``): the upsampled maps and what is computed from them are the largest
    temporaries of dissection, so a chunk is kept small enough to be reused from the heap."""
    size = labels.shape[-1]
    chunk = chunk or chunk_images(activations.shape[1], size)
    for start in range(0, activations.shape[0], chunk):
        yield upsample_to(activations[start:start + chunk].float(), size), labels[start:start + chunk]


def tally_thresholded(tally: IoUTally, activations: torch.Tensor, level: torch.Tensor, labels: torch.Tensor,
                      chunk: int | None = None) -> None:
    """Upsample to the label grid, threshold at ``level`` and tally.

    Bilinear upsampling never exceeds a map's own maximum, so a (image, unit) map whose maximum is
    at or below the unit's level has no active pixel: when most maps are like that (Network
    Dissection's top 0.5 %), only the others are upsampled and tallied (``IoUTally.add_pairs``,
    NetDissect-Lite's per-unit skip, vectorised), and of those only the part that can cross the
    level, where the upsampling allows (``dissect_core.crops``). The counts are the same either way.
    """
    level = level.to(activations.device)
    fires = activations.flatten(2).amax(2) > level[None, :]  # (n, units)
    if float(fires.float().mean()) > 0.5:
        for up, chunk_labels in upsampled_chunks(activations, labels, chunk):
            tally.add(up > level[None, :, None, None], chunk_labels)
        return
    size = labels.shape[-1]
    image, unit = fires.nonzero(as_tuple=True)
    tally.count_labels(labels)
    if crops_apply(activations.shape[-2], activations.shape[-1], size, activations.device):
        # only the part of each map that can cross its level is upsampled
        tally.add_active(image, unit, *active_pixels(activations[image, unit], level[unit], size, CHUNK_VALUES),
                         labels)
        return
    per_chunk = max(1, CHUNK_VALUES // (size * size))
    for start in range(0, image.numel(), per_chunk):
        i, u = image[start:start + per_chunk], unit[start:start + per_chunk]
        maps = upsample_to(activations[i, u][:, None].float(), size)[:, 0]
        tally.add_pairs(i, u, maps > level[u][:, None, None], labels)


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def one_process_batches(config: DissectConfig, count: int) -> list[list[int]]:
    """The run's first ``count`` sample ids in the batches a one-process run uses."""
    ids = list(range(config.first, config.first + count))
    return [ids[i : i + config.batch_size] for i in range(0, count, config.batch_size)]


def _shard_batches(config: DissectConfig) -> list[list[int]]:
    """This process's batches: every world-th batch of the one-process batch list, so each sample is
    computed in the same batch as in a one-process run (bit-identical activations)."""
    rank, world = _rank_and_world()
    return one_process_batches(config, config.samples)[rank::world]


def _resize_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest subsampling of label maps to ``size`` (taking each block's centre-most pixel)."""
    side = labels.shape[-1]
    if side == size:
        return labels
    if side % size == 0:
        step = side // size
        return labels[..., step // 2 :: step, step // 2 :: step]
    return F.interpolate(labels.float(), size=(size, size), mode="nearest").long()


def check_config(layers: Sequence[str], config: DissectConfig) -> None:
    """Refuse a dissection that cannot run (no layers, quantiles out of range, unknown threshold)."""
    if not layers:
        raise ValueError("at least one layer is needed")
    if not 0 < config.quantile < 1 or not 0 < config.insert_quantile < 1:
        raise ValueError("quantiles must be strictly between 0 and 1")
    if config.threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {config.threshold!r}")


def layer_shapes(generator: ProgressiveGenerator, layers: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {layer: generator.layer_shape(layer) for layer in layers}


def label_size_of(generator: ProgressiveGenerator, config: DissectConfig, shapes: dict[str, tuple[int, int, int]]) -> int:
    return config.label_size or max(generator.resolution // 2, max(s[1] for s in shapes.values()))


def new_level_statistics(config: DissectConfig, shapes: dict[str, tuple[int, int, int]],
                         device: torch.device | str) -> tuple[dict[str, TopValues], dict[str, TopImages]]:
    """Empty pass-1 statistics (each unit's top activation values and top images) per layer."""
    lowest = min(1 - config.quantile, config.insert_quantile)
    tops, images = {}, {}
    for layer, (units, h, w) in shapes.items():
        keep = quantile_rank(config.samples * h * w, lowest)
        if keep * units > MAX_TOP_VALUES:
            raise ValueError(f"{layer}: {config.samples} samples need {keep * units:,} kept values; use fewer samples")
        tops[layer] = TopValues(units, keep, device)
        images[layer] = TopImages(units, config.topk, device)
    return tops, images


def new_iou_statistics(shapes: dict[str, tuple[int, int, int]], category_of: list[int],
                       device: torch.device | str) -> tuple[dict[str, IoUTally], dict[str, ConceptFeatures]]:
    """Empty pass-2 statistics (IoU counts and concept features) per layer."""
    return ({layer: IoUTally(shapes[layer][0], category_of, device) for layer in shapes},
            {layer: ConceptFeatures(shapes[layer][0], len(category_of), device) for layer in shapes})


def add_level_batch(generator: ProgressiveGenerator, layers: Sequence[str], config: DissectConfig, batch: list[int],
                    tops: dict[str, TopValues], images: dict[str, TopImages]) -> dict[str, torch.Tensor]:
    """Pass 1 on one batch of sample ids: the generator up to the layers only. Returns the
    batch's activations (the IQR candidate levels sample them)."""
    device = next(generator.parameters()).device
    z = z_tensor(batch, generator.z_dim, seed=config.seed, device=device)
    with Trace(generator, layers, stop=True) as trace:
        generator(z)
    out = {}
    for layer in layers:
        acts = out[layer] = trace[layer].float()
        tops[layer].add(acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1]))
        images[layer].add(acts.flatten(2).amax(2), torch.tensor(batch, device=device))
    return out


def _traced_labels(generator: ProgressiveGenerator, segmenter: Segmenter, layers: Sequence[str], config: DissectConfig,
                   batch: list[int], label_size: int) -> tuple[Trace, torch.Tensor]:
    device = next(generator.parameters()).device
    z = z_tensor(batch, generator.z_dim, seed=config.seed, device=device)
    with Trace(generator, layers) as trace:
        generated = generator(z)
    return trace, _resize_labels(segmenter(generated.clamp(-1, 1)).to(device), label_size)


def add_iou_batch(generator: ProgressiveGenerator, segmenter: Segmenter, layers: Sequence[str], config: DissectConfig,
                  batch: list[int], levels: dict[str, torch.Tensor], label_size: int,
                  tallies: dict[str, IoUTally], features: dict[str, ConceptFeatures],
                  traced: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
                  counted_below: int | None = None) -> None:
    """Pass 2 on one batch: the whole generator and the segmenter, thresholded at ``levels``.
    ``traced``: the batch's activations and labels already computed (by the IQR calibration).
    ``counted_below``: sample ids below it are in ``tallies`` already (the IQR calibration's images,
    ``LevelTally.iou_tally``); only their concept features are added."""
    trace: Trace | dict[str, torch.Tensor]
    if traced is None:
        trace, labels = _traced_labels(generator, segmenter, layers, config, batch, label_size)
    else:
        trace, labels = traced[0], traced[1].long()
    fresh = 0 if counted_below is None else sum(1 for sample in batch if sample < counted_below)  # ids ascend
    for layer in layers:
        if fresh < len(batch):
            tally_thresholded(tallies[layer], trace[layer][fresh:], levels[layer], labels[fresh:])
        if label_size % trace[layer].shape[-2] == 0:
            features[layer].add(trace[layer].float(), labels)


def add_calibration_batch(generator: ProgressiveGenerator, segmenter: Segmenter, layers: Sequence[str],
                          config: DissectConfig, batch: list[int], label_size: int,
                          tallies: dict[str, LevelTally]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """IQR calibration on one batch: counts at every candidate level. Returns the batch's
    activations and labels, which pass 2 can reuse for the same batch."""
    trace, labels = _traced_labels(generator, segmenter, layers, config, batch, label_size)
    for layer in layers:
        for up, chunk_labels in upsampled_chunks(trace[layer], labels):
            tallies[layer].add(up, chunk_labels)
    return {layer: trace[layer] for layer in layers}, labels


def choose_iqr(tallies: dict[str, LevelTally], category_of: list[int]) -> tuple[dict, dict, dict, dict]:
    """Each unit's level and label by IQR from merged calibration counts: (levels, iqr, labels,
    chosen candidate index) per layer."""
    levels: dict[str, torch.Tensor] = {}
    iqr: dict[str, torch.Tensor] = {}
    labels_of: dict[str, torch.Tensor] = {}
    index: dict[str, torch.Tensor] = {}
    for layer, tally in tallies.items():
        choice = choose_levels(tally.at_levels(), tally.levels, category_of)
        levels[layer], iqr[layer], labels_of[layer], index[layer] = choice.level, choice.iqr, choice.label, choice.index
    return levels, iqr, labels_of, index


def assemble_tables(layers: Sequence[str], shapes: dict[str, tuple[int, int, int]], segmenter: Segmenter,
                    config: DissectConfig, levels: dict[str, torch.Tensor], q99: dict[str, torch.Tensor],
                    images: dict[str, TopImages], tallies: dict[str, IoUTally],
                    features: dict[str, ConceptFeatures], iqr: dict, iqr_labels: dict) -> dict[str, LayerTable]:
    """One ``LayerTable`` per layer from the run's merged statistics."""
    tables = {}
    for layer in layers:
        tables[layer] = LayerTable(
            layer=layer, shape=shapes[layer], labels=list(segmenter.labels), categories=list(segmenter.categories),
            iou=tallies[layer].iou().cpu().numpy(), level=levels[layer].cpu().numpy(), q99=q99[layer].cpu().numpy(),
            top_images=images[layer].indices.cpu().numpy(), top_scores=images[layer].scores.cpu().numpy(),
            config=config, iqr=iqr[layer].cpu().numpy() if layer in iqr else None,
            iqr_label=iqr_labels[layer].cpu().numpy() if layer in iqr_labels else None,
            concept_features=features[layer].mean().cpu().numpy(), concept_cells=features[layer].cells.cpu().numpy(),
        )
    return tables


class _Reuse:
    """Activations and labels of the IQR calibration's batches that pass 2 computes again (the same
    batch, so bit-identical), kept within ``REUSE_BYTES``: pass 2 skips the generator and the
    segmenter for them. Each is handed out once and then dropped."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.wanted = {tuple(b) for b in batches}
        self.kept: dict[tuple[int, ...], tuple[dict[str, torch.Tensor], torch.Tensor]] = {}
        self.bytes = 0

    def keep(self, batch: list[int], acts: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        if tuple(batch) not in self.wanted:
            return
        small = labels.to(torch.int16) if int(labels.max()) < 2**15 else labels
        size = sum(a.numel() * a.element_size() for a in acts.values()) + small.numel() * small.element_size()
        if self.bytes + size <= REUSE_BYTES:
            self.kept[tuple(batch)] = (acts, small)
            self.bytes += size

    def take(self, batch: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
        return self.kept.pop(tuple(batch), None)


@torch.no_grad()
def dissect(
    generator: ProgressiveGenerator,
    layers: Sequence[str],
    segmenter: Segmenter,
    config: DissectConfig = DissectConfig(),
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict[str, LayerTable]:
    """Dissect ``layers`` of ``generator``; returns one ``LayerTable`` per layer.

    With a ``checkpoint`` (one process only), the statistics are saved as the passes go and a run
    started again with the same inputs continues after the last saved batch, to the same table.
    (``dissect_core.sharded.dissect_sharded`` runs the same passes as tasks on a cluster.)
    """
    check_config(layers, config)
    device = next(generator.parameters()).device
    batches = _shard_batches(config)
    shapes = layer_shapes(generator, layers)
    label_size = label_size_of(generator, config, shapes)
    rank, world = _rank_and_world()
    if checkpoint is not None and world > 1:
        raise ValueError("checkpointed dissection runs in one process (torchrun shards are not checkpointed)")
    calibration = len(calibration_batches(config)[rank::world]) if config.threshold == "iqr" else 0
    total_batches = 2 * len(batches) + calibration
    saved = checkpoint.load() if checkpoint is not None else None

    def report(stage: str, done: int) -> None:
        if cancelled is not None and cancelled():
            raise InterruptedError("dissection cancelled")
        if progress is not None:
            progress(stage, done, total_batches)

    reuse = _Reuse(batches)  # the calibration's forward passes, kept for pass 2's same batches

    # pass 1: levels and top images (and, in IQR mode, the candidate levels' samples of the same batches)
    tops, images = new_level_statistics(config, shapes, device)
    candidate_values = CandidateValues(config, shapes) if config.threshold == "iqr" else None
    category_of = category_index(segmenter)
    iqr: dict = {}
    iqr_labels: dict = {}
    seeded: dict[str, IoUTally] = {}  # IQR mode: the calibration images' IoU counts, from the calibration
    if saved is not None and saved["stage"] == "iou":  # pass 1 (and the IQR calibration) finished before
        for layer in layers:
            images[layer].load_state_dict(saved["images"][layer])
        levels = {layer: saved["levels"][layer].to(device) for layer in layers}
        q99 = {layer: saved["q99"][layer].to(device) for layer in layers}
        iqr = {layer: v.to(device) for layer, v in saved["iqr"].items()}
        iqr_labels = {layer: v.to(device) for layer, v in saved["iqr_labels"].items()}
    else:
        first = 0
        if saved is not None and saved["stage"] == "levels":
            first = int(saved["done"])
            for layer in layers:
                tops[layer].load_state_dict(saved["tops"][layer])
                images[layer].load_state_dict(saved["images"][layer])
            report("levels", first)
        for done, batch in enumerate(batches, start=1):
            if done <= first:
                continue
            acts = add_level_batch(generator, layers, config, batch, tops, images)
            if candidate_values is not None:
                candidate_values.offer(batch, acts)
            if checkpoint is not None:
                checkpoint.save({"stage": "levels", "done": done,
                                 "tops": {layer: tops[layer].state_dict() for layer in layers},
                                 "images": {layer: images[layer].state_dict() for layer in layers}})
            report("levels", done)
        for layer in layers:
            tops[layer].all_reduce()
            images[layer].all_reduce()
        levels = {layer: tops[layer].quantile(1 - config.quantile) for layer in layers}
        q99 = {layer: tops[layer].quantile(config.insert_quantile) for layer in layers}

        # IQR mode: each unit's most informative level, chosen on the run's first images
        if config.threshold == "iqr":
            candidates = calibration_levels(generator, layers, config, shapes, candidate_values)
            levels, iqr, iqr_labels, seeded = _choose_iqr_levels(
                generator, segmenter, layers, candidates, config, label_size, category_of,
                lambda done: report("calibrate", len(batches) + done), keep=reuse.keep)
        saved = None
    levels_state = {"levels": {k: v.cpu() for k, v in levels.items()}, "q99": {k: v.cpu() for k, v in q99.items()},
                    "iqr": {k: v.cpu() for k, v in iqr.items()}, "iqr_labels": {k: v.cpu() for k, v in iqr_labels.items()},
                    "images": {layer: images[layer].state_dict() for layer in layers}}

    # pass 2: IoU with segmenter labels (in IQR mode only for images beyond the calibration's: its
    # counts at the chosen levels are theirs already; every rank skips them, rank 0 holds them)
    tallies, features = new_iou_statistics(shapes, category_of, device)
    counted_below = config.first + min(config.samples, CALIBRATION_IMAGES) if seeded else None
    if seeded and rank == 0:
        tallies.update(seeded)
    first = 0
    if saved is not None:
        first = int(saved["done"])
        counted_below = saved.get("counted_below")  # None in a checkpoint from before the calibration counted
        if "tallies" in saved:
            for layer in layers:
                tallies[layer].load_state_dict(saved["tallies"][layer])
                features[layer].load_state_dict(saved["features"][layer])
        report("iou", len(batches) + calibration + first)
    elif checkpoint is not None:  # the levels are never recomputed
        checkpoint.save({"stage": "iou", "done": 0, **levels_state, "counted_below": counted_below,
                         "tallies": {layer: tallies[layer].state_dict() for layer in layers},
                         "features": {layer: features[layer].state_dict() for layer in layers}}, force=True)
    for done, batch in enumerate(batches, start=1):
        if done <= first:
            continue
        add_iou_batch(generator, segmenter, layers, config, batch, levels, label_size, tallies, features,
                      reuse.take(batch), counted_below)
        if checkpoint is not None:
            checkpoint.save({"stage": "iou", "done": done, **levels_state, "counted_below": counted_below,
                             "tallies": {layer: tallies[layer].state_dict() for layer in layers},
                             "features": {layer: features[layer].state_dict() for layer in layers}})
        report("iou", len(batches) + calibration + done)
    for layer in layers:
        tallies[layer].all_reduce()
        features[layer].all_reduce()
    return assemble_tables(layers, shapes, segmenter, config, levels, q99, images, tallies, features, iqr, iqr_labels)


def calibration_batches(config: DissectConfig) -> list[list[int]]:
    """IQR calibration images (the run's first ones) in one-process batches."""
    return one_process_batches(config, min(config.samples, CALIBRATION_IMAGES))


def _choose_iqr_levels(generator: ProgressiveGenerator, segmenter: Segmenter, layers: Sequence[str],
                       candidates: dict[str, torch.Tensor], config: DissectConfig, label_size: int,
                       category_of: list[int], step: Callable[[int], None],
                       keep: Callable[[list[int], dict[str, torch.Tensor], torch.Tensor], None] | None = None,
                       ) -> tuple[dict, dict, dict, dict[str, IoUTally]]:
    """Tally the calibration images at every candidate level (this rank's share of the batches,
    all-reduced) and let each unit pick its level and label by IQR. Returns (levels, iqr, labels)
    per layer, and the calibration images' IoU tallies at the chosen levels (``LevelTally.iou_tally``).
    ``keep`` is offered each batch's activations and labels."""
    rank, world = _rank_and_world()
    tallies = {layer: LevelTally(candidates[layer], category_of) for layer in layers}
    for done, batch in enumerate(calibration_batches(config)[rank::world], start=1):
        acts, labels = add_calibration_batch(generator, segmenter, layers, config, batch, label_size, tallies)
        if keep is not None:
            keep(batch, acts, labels)
        step(done)
    for layer in layers:
        tallies[layer].all_reduce()
    levels, iqr, unit_labels, index = choose_iqr(tallies, category_of)
    return levels, iqr, unit_labels, {layer: tallies[layer].iou_tally(index[layer]) for layer in layers}


class CandidateValues:
    """The values the IQR candidate levels are chosen from: every calibration batch's activations,
    strided to at most ``CALIBRATION_VALUES`` per layer in all. Pass 1 runs the same batches to the
    same layers, so it offers them here (bit-identical) and the candidate pass only runs the
    batches it did not see (a resumed pass 1, another rank's share)."""

    def __init__(self, config: DissectConfig, shapes: dict[str, tuple[int, int, int]]) -> None:
        self.batches = calibration_batches(config)
        count = sum(len(b) for b in self.batches)
        self.stride = {layer: max(1, math.ceil(count * h * w * units / CALIBRATION_VALUES))
                       for layer, (units, h, w) in shapes.items()}
        self.sampled: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}
        self._wanted = {tuple(b) for b in self.batches}

    def offer(self, batch: list[int], acts: dict[str, torch.Tensor]) -> None:
        if tuple(batch) in self._wanted:
            self.sampled[tuple(batch)] = {layer: self._sample(layer, a) for layer, a in acts.items()}

    def _sample(self, layer: str, acts: torch.Tensor) -> torch.Tensor:
        # a copy, so the batch's whole activations are not kept alive by a view
        return acts.float().permute(1, 0, 2, 3).reshape(acts.shape[1], -1)[:, :: self.stride[layer]].clone()

    def levels(self, generator: ProgressiveGenerator, layers: Sequence[str], seed: int) -> dict[str, torch.Tensor]:
        device = next(generator.parameters()).device
        for batch in self.batches:
            if tuple(batch) not in self.sampled:
                z = z_tensor(batch, generator.z_dim, seed=seed, device=device)
                with Trace(generator, layers, stop=True) as trace:
                    generator(z)
                self.offer(batch, {layer: trace[layer] for layer in layers})
        return {layer: candidate_levels(torch.cat([self.sampled[tuple(b)][layer] for b in self.batches], 1),
                                        FRACTIONS) for layer in layers}


def calibration_levels(generator: ProgressiveGenerator, layers: Sequence[str], config: DissectConfig,
                       shapes: dict[str, tuple[int, int, int]],
                       values: CandidateValues | None = None) -> dict[str, torch.Tensor]:
    """Candidate levels per unit from the run's first images, computed alike in every process
    (same batches as a one-process run, so the levels are bit-identical across ranks). Its
    values are subsampled, not selected, so this pass does not shard: it runs whole where it runs,
    except for the batches ``values`` already holds from pass 1."""
    values = values if values is not None else CandidateValues(config, shapes)
    return values.levels(generator, layers, config.seed)


def interpretable_fraction(table: LayerTable) -> float:
    """Share of interpretable units (``LayerTable.interpretable``)."""
    return float(table.interpretable.mean())
