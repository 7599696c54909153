"""Network Dissection of a classifier's units on a probe set in the Broden format (Bau et al. 2017).

Per unit: threshold at the top 0.5 % of its activations over all positions of all probe images
(exact, via ``stats.TopValues``); upsample its map bilinearly to the segmentation grid; IoU with
every label, accumulated over the data set, where the unit's area only counts in images where
labels of the label's category lie under the unit's mask (NetDissect-Lite's ``tally_units_cat``;
``denominator="image"`` counts images where the category appears anywhere); per category the best label among
labels whose primary category it is; interpretable when the best IoU > 0.04. Streaming and
constant in memory (statistics are sums), batched on the model's device.

Unique detectors per category follow NetDissect's plot rule: for each category, the number of
distinct labels among units whose best IoU *within that category* exceeds 0.04 (a unit may count in
several categories); ``unique_detectors(..., rule="top")`` counts only each unit's single best label.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from dissect_core.datasets.broden import BrodenDataset
from dissect_core.gandissect import tally_thresholded
from dissect_core.nethook import Trace, folded_copy
from dissect_core.precision import resolve_precision
from dissect_core.stats import IoUTally, TopImages, TopValues, quantile_rank

__all__ = ["NetDissectConfig", "NetDissectTable", "netdissect", "tally_csv", "unique_detectors", "class_drivers"]

Progress = Callable[[str, int, int], None]


TALLY_IMAGES = 96
"""Images tallied in one call (whole probe batches, at least this many): each call's fixed cost,
a few dozen small steps, is shared by more of them. More than about 100 raised the peak memory
(192: 972 MB, 96: 905 MB on 5,000 world probe images) and gained nothing."""


@dataclass(frozen=True)
class NetDissectConfig:
    quantile: float = 0.005
    batch_size: int = 64
    min_iou: float = 0.04
    topk: int = 10
    limit: int | None = None
    """Use only the first ``limit`` probe images."""
    max_cached_bytes: int = 4 << 30
    """Activations and label maps kept in memory between the two stages (decode and run the model
    once); batches beyond this are decoded and run again for the tally."""
    precision: str = "auto"
    """Model arithmetic: ``auto`` (bfloat16 where the hardware computes it natively,
    ``precision.resolve_precision``; on 5,000 world probe images every unit keeps its float32
    label), ``fp32`` or ``bf16``. Levels and tallies are float32 either way."""
    denominator: str = "mask"
    """``mask``: NetDissect-Lite's rule (a unit's area counts for a category only in images where that
    category's labels lie under its mask); ``image``: wherever the category appears in the image
    (``stats.IoUTally``)."""


@dataclass
class NetDissectTable:
    layer: str
    units: int
    labels: list[tuple[str, str]]  # (name, primary category) by label number
    categories: list[str]
    iou: np.ndarray  # (units, labels)
    level: np.ndarray
    top_images: np.ndarray  # (units, k) probe indices
    intersection: np.ndarray  # (units, labels)
    unit_area: np.ndarray  # (units, categories)
    label_area: np.ndarray  # (labels,)
    images: int
    config: NetDissectConfig

    def best_in_category(self, unit: int, category: str) -> tuple[int, float]:
        numbers = [n for n, (_, c) in enumerate(self.labels) if c == category and n > 0]
        if not numbers:
            return 0, 0.0
        best = max(numbers, key=lambda n: self.iou[unit, n])
        return best, float(self.iou[unit, best])

    def unit_label(self, unit: int) -> tuple[str, str, float]:
        """(label, category, IoU) of the unit's best label over all categories."""
        best = max(((c, *self.best_in_category(unit, c)) for c in self.categories), key=lambda t: t[2])
        return self.labels[best[1]][0], best[0], best[2]


def _batches(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _prefetched(dataset: BrodenDataset, batches: list[range],
                device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches decoded one ahead on a thread of their own: PNG decoding releases the GIL, so
    on a second core it overlaps the model and the tally instead of adding to them."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-decode") as pool:
        ahead = None
        for indices in batches:
            current, ahead = ahead, pool.submit(_load_batch, dataset, indices, device)
            if current is not None:
                yield current.result()
        if ahead is not None:
            yield ahead.result()


def _load_batch(dataset: BrodenDataset, indices: range, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in indices]
    images = torch.from_numpy(np.stack([img for img, _ in items])).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
    sh, sw = items[0][1][dataset.categories[0]][0].shape if items[0][1][dataset.categories[0]] else images.shape[-2:]
    channels = []
    for category in dataset.categories:
        depth = max(len(labels[category]) for _, labels in items)
        for d in range(depth):
            maps = [labels[category][d] if d < len(labels[category]) else np.zeros((sh, sw), np.int64)
                    for _, labels in items]
            channels.append(np.stack(maps))
    labels = torch.from_numpy(np.stack(channels, 1)) if channels else torch.zeros(len(items), 1, sh, sw, dtype=torch.long)
    return images, labels.to(device)


@torch.no_grad()
def netdissect(model: torch.nn.Module, layers: Sequence[str], dataset: BrodenDataset,
               config: NetDissectConfig = NetDissectConfig(), progress: Progress | None = None,
               cancelled: Callable[[], bool] | None = None) -> dict[str, NetDissectTable]:
    """Dissect ``layers`` of ``model`` on ``dataset``; one table per layer."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    dtype = resolve_precision(config.precision, device)
    runner = folded_copy(model).to(dtype)  # batch norms folded into the convolutions: the same maps, faster
    count = min(len(dataset), config.limit or len(dataset))
    if count == 0:
        raise ValueError("the probe set is empty")
    batches = _batches(count, config.batch_size)
    total = 2 * len(batches)

    def report(stage: str, done: int) -> None:
        if cancelled is not None and cancelled():
            raise InterruptedError("network dissection cancelled")
        if progress is not None:
            progress(stage, done, total)

    labels = [("-", "")] + [("", "")] * (dataset.num_labels - 1)
    for label in dataset.labels:
        labels[label.number] = (label.name, label.category)
    categories = list(dataset.categories)
    category_of = [-1] + [categories.index(c) if c in categories else -1 for _, c in labels[1:]]
    try:
        # one pass over the probe: each image and its labels decoded once, the model run once; the
        # activations and label maps are kept (within ``max_cached_bytes``) for the tally
        tops: dict[str, TopValues] = {}
        images_top: dict[str, TopImages] = {}
        cached: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
        cached_bytes = 0
        for b, (indices, (images, label_maps)) in enumerate(zip(batches, _prefetched(dataset, batches, device)),
                                                            start=1):
            with Trace(runner, layers, stop=True) as trace:
                runner(images.to(dtype))
            acts = {layer: trace[layer].float() for layer in layers}
            for layer in layers:
                if layer not in tops:
                    k, h, w = acts[layer].shape[1:]
                    tops[layer] = TopValues(k, quantile_rank(count * h * w, 1 - config.quantile), device)
                    images_top[layer] = TopImages(k, config.topk, device)
                tops[layer].add(acts[layer].permute(0, 2, 3, 1).reshape(-1, acts[layer].shape[1]))
                images_top[layer].add(acts[layer].flatten(2).amax(2), torch.tensor(list(indices), device=device))
            small = label_maps.to(torch.int16 if dataset.num_labels < 2**15 else torch.int32)
            cached_bytes += sum(a.numel() * a.element_size() for a in acts.values()) + small.numel() * small.element_size()
            cached.append((acts, small) if cached_bytes <= config.max_cached_bytes else ({}, small[:0]))
            report("activations", b)
        levels = {layer: tops[layer].quantile(1 - config.quantile) for layer in layers}
        # tally against the probe labels (re-reading only what did not fit in memory)
        # (several batches tallied at once: the counts are sums, and each call's fixed cost is shared)
        tallies = {layer: IoUTally(tops[layer].units, category_of, device, config.denominator) for layer in layers}
        pending: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
        for b, (indices, (acts, label_maps)) in enumerate(zip(batches, cached), start=1):
            if not acts:
                images, label_maps = _load_batch(dataset, indices, device)
                with Trace(runner, layers, stop=True) as trace:
                    runner(images.to(dtype))
                acts = {layer: trace[layer].float() for layer in layers}
            pending.append((acts, label_maps))
            cached[b - 1] = ({}, label_maps[:0])  # free as we go
            if sum(m.shape[0] for _, m in pending) >= TALLY_IMAGES or b == len(batches):
                labels_now = torch.cat([m for _, m in pending]).long()
                for layer in layers:
                    tally_thresholded(tallies[layer], torch.cat([a[layer] for a, _ in pending]), levels[layer],
                                      labels_now)
                pending = []
            report("iou", len(batches) + b)
    finally:
        model.train(was_training)
    out = {}
    for layer in layers:
        tally = tallies[layer]
        out[layer] = NetDissectTable(
            layer=layer, units=tally.units, labels=labels, categories=categories, iou=tally.iou().cpu().numpy(),
            level=levels[layer].cpu().numpy(), top_images=images_top[layer].indices.cpu().numpy(),
            intersection=tally.intersection.cpu().numpy(), unit_area=tally.unit_area.cpu().numpy(),
            label_area=tally.label_area.cpu().numpy(), images=count, config=config)
    return out


def tally_csv(table: NetDissectTable) -> str:
    """NetDissect-Lite's ``tally.csv``: one row per unit (1-based), sorted by score descending."""
    header = ["unit", "category", "label", "score"]
    for category in table.categories:
        header += [f"{category}-label", f"{category}-truth", f"{category}-activation", f"{category}-intersect",
                   f"{category}-iou"]
    rows = []
    for unit in range(table.units):
        label, category, score = table.unit_label(unit)
        row: list[object] = [unit + 1, category, label, f"{score:.6f}"]
        for c_index, category_name in enumerate(table.categories):
            number, iou = table.best_in_category(unit, category_name)
            number = number if iou > 0 else 0  # Lite: no label where every IoU is 0
            row += [table.labels[number][0] if number else "", int(table.label_area[number]) if number else 0,
                    int(table.unit_area[unit, c_index]), int(table.intersection[unit, number]) if number else 0,
                    f"{iou:.6f}"]
        rows.append((score, row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for _, row in sorted(rows, key=lambda r: -r[0]):
        writer.writerow(row)
    return buffer.getvalue()


def unique_detectors(table: NetDissectTable, rule: str = "category") -> dict[str, dict[str, object]]:
    """Distinct detected labels per category, by NetDissect's plot rule ("category") or the unit's top label ("top")."""
    found: dict[str, set[str]] = {c: set() for c in table.categories}
    for unit in range(table.units):
        if rule == "top":
            label, category, iou = table.unit_label(unit)
            if iou > table.config.min_iou:
                found[category].add(label)
        else:
            for category in table.categories:
                number, iou = table.best_in_category(unit, category)
                if iou > table.config.min_iou:
                    found[category].add(table.labels[number][0])
    return {c: {"count": len(v), "labels": sorted(v)} for c, v in found.items()}


def class_drivers(classifier: torch.nn.Module, unit: int, k: int = 3) -> list[tuple[int, float]]:
    """The classes whose final linear weights on ``unit`` are largest (for GAP + linear classifiers)."""
    fc = getattr(classifier, "fc", None)
    if not isinstance(fc, torch.nn.Linear) or unit >= fc.in_features:
        return []
    weights = fc.weight[:, unit].detach().cpu()
    order = weights.argsort(descending=True)[:k]
    return [(int(c), float(weights[c])) for c in order]
