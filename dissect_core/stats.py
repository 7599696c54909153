"""Streaming, exactly mergeable statistics for dissection.

Every statistic here is a sum or an exact selection, so partial results from shards (processes,
GPUs, resumed runs) merge into exactly what one pass over all the data gives:

- ``TopValues``: the exact ``k`` largest values per unit, hence exact upper quantiles
  (the 99th percentile of 128,000 values is the 1,281st largest); merged by re-selecting.
- ``TopImages``: per unit, the ``k`` images with the highest score (ties broken by the lower
  image index, so the result does not depend on the order in which shards arrive).
- ``IoUTally``: unit x label intersections, per-unit activation counts per category (counted only
  in images that carry that category: the category-aware denominators of NetDissect), and label
  pixel counts; int64 sums.
- ``ConceptFeatures``: per label, the sum of the layer's feature vectors over the cells the label
  covers at least half of, and the number of such cells (float64 sums; the mean is the concept's
  insertion vector).
- ``LevelTally``: the same counts for many candidate thresholds at once (activations bucketed
  between per-unit candidate levels), from which the IQR threshold search picks each unit's level.

All state lives on the device of the tensors fed in. ``state_dict`` / ``load_state_dict`` and
``merge`` exist on each; ``all_reduce`` merges across ``torch.distributed`` ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["TopValues", "TopImages", "IoUTally", "LevelTally", "ConceptFeatures", "quantile_rank"]


def quantile_rank(total: int, quantile: float) -> int:
    """1-based rank from the top of the ``quantile`` of ``total`` values (nearest-rank definition).

    The q-quantile is the smallest value v with at least ``ceil(q * total)`` values <= v, which is
    the ``total - ceil(q * total) + 1``-th largest value.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    return total - max(math.ceil(quantile * total), 1) + 1


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


class TopValues:
    """The exact ``k`` largest values of each unit's activations (over all positions and images)."""

    def __init__(self, units: int, k: int, device: torch.device | str = "cpu") -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.units, self.k = units, k
        self.values = torch.empty(0, units, device=device)
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        """``values``: (n, units) samples, e.g. activations with positions flattened into n."""
        if values.dim() != 2 or values.shape[1] != self.units:
            raise ValueError(f"expected (n, {self.units}) values, got {tuple(values.shape)}")
        self.count += values.shape[0]
        pool = torch.cat([self.values, values.detach().to(self.values.device, torch.float32)], 0)
        if pool.shape[0] > self.k:
            pool = pool.topk(self.k, dim=0, sorted=False).values
        self.values = pool

    def merge(self, other: TopValues) -> None:
        pool = torch.cat([self.values, other.values.to(self.values.device)], 0)
        self.values = pool.topk(min(self.k, pool.shape[0]), dim=0, sorted=False).values
        self.count += other.count

    def quantile(self, q: float) -> torch.Tensor:
        """Per-unit q-quantile (exact while its rank from the top is within ``k``)."""
        rank = quantile_rank(self.count, q)
        if rank > self.values.shape[0]:
            raise ValueError(f"quantile {q} of {self.count} values needs the top {rank}, only {self.values.shape[0]} kept")
        return self.values.sort(dim=0, descending=True).values[rank - 1]

    def all_reduce(self) -> None:
        dist = _dist()
        if dist is None:
            return
        counts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(counts, (self.count, self.values.cpu()))
        self.values = torch.empty(0, self.units, device=self.values.device)
        self.count = 0
        for count, values in counts:
            self.count += count
            pool = torch.cat([self.values, values.to(self.values.device)], 0)
            self.values = pool.topk(min(self.k, pool.shape[0]), dim=0, sorted=False).values

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"values": self.values.cpu(), "count": self.count, "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        self.values, self.count, self.k = state["values"].to(self.values.device), int(state["count"]), int(state["k"])


class TopImages:
    """Per unit, the ``k`` highest-scoring images (scores such as the unit's spatial maximum)."""

    def __init__(self, units: int, k: int, device: torch.device | str = "cpu") -> None:
        self.units, self.k = units, k
        self.scores = torch.empty(units, 0, device=device)
        self.indices = torch.empty(units, 0, dtype=torch.long, device=device)

    def add(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        """``scores``: (n, units) per image; ``indices``: (n,) the images' global ids."""
        scores = scores.detach().float().to(self.scores.device).T  # (units, n)
        indices = indices.to(self.indices.device).long()[None].expand(self.units, -1)
        self._select(torch.cat([self.scores, scores], 1), torch.cat([self.indices, indices], 1))

    def _select(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        # deterministic order: by score descending, then by image index ascending
        order = indices.argsort(dim=1, stable=True)
        scores, indices = scores.gather(1, order), indices.gather(1, order)
        order = scores.argsort(dim=1, descending=True, stable=True)[:, : self.k]
        self.scores, self.indices = scores.gather(1, order), indices.gather(1, order)

    def merge(self, other: TopImages) -> None:
        self._select(torch.cat([self.scores, other.scores], 1), torch.cat([self.indices, other.indices], 1))

    def all_reduce(self) -> None:
        dist = _dist()
        if dist is None:
            return
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.scores.cpu(), self.indices.cpu()))
        device = self.scores.device
        self._select(torch.cat([p[0] for p in parts], 1).to(device), torch.cat([p[1] for p in parts], 1).to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.cpu(), "indices": self.indices.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.scores, self.indices = state["scores"].to(self.scores.device), state["indices"].to(self.scores.device)


def _label_areas_and_presence(label_maps: torch.Tensor, category_of: torch.Tensor, labels: int,
                              categories: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel count of every label (label 0 excluded) and which categories each image carries.

    ``label_maps``: (n, channels, H, W) label numbers; returns ((labels,) int64, (n, categories) bool).
    Two bincounts: one over all pixels, one over (image, label) pairs.
    """
    n = label_maps.shape[0]
    device = label_maps.device
    flat = label_maps.reshape(n, -1)
    area = torch.bincount(flat.reshape(-1), minlength=labels)[:labels].clone()
    area[0] = 0
    per_image = torch.bincount((flat + torch.arange(n, device=device)[:, None] * labels).reshape(-1),
                               minlength=n * labels).view(n, labels)
    per_image[:, 0] = 0
    valid = category_of >= 0
    present = torch.zeros(n, categories, dtype=torch.bool, device=device)
    has = per_image[:, valid] > 0
    present.index_put_((torch.arange(n, device=device)[:, None].expand_as(has)[has],
                        category_of[valid][None].expand_as(has)[has]), torch.ones((), dtype=torch.bool, device=device))
    return area, present


SPARSE_DENSITY = 0.1
"""Below this share of active mask pixels, intersections are counted by bincount over active pixels."""
KEY_BYTES = 1 << 25
"""Largest int32 key array ``LevelTally.add`` hands one bincount (32 MB)."""


class IoUTally:
    """Counts for IoU of every unit's thresholded mask with every label, over many images.

    ``category_of[l]`` is the category index of label ``l`` (−1 for label 0, which is ignored).
    Label maps come one channel per category, holding global label numbers.

    IoU denominators are category-aware: a unit's active pixels in an image count towards the
    union with a label only if the image "carries" the label's category. ``denominator`` says
    what carrying means: ``"mask"`` (NetDissect-Lite's ``tally_units_cat``: some pixel of that
    category lies under the unit's mask in that image) or ``"image"`` (the category appears
    anywhere in the image; larger denominators, the rule this project's GAN dissection uses).
    """

    DENOMINATORS = ("image", "mask")

    def __init__(self, units: int, category_of: Sequence[int], device: torch.device | str = "cpu",
                 denominator: str = "image") -> None:
        if denominator not in self.DENOMINATORS:
            raise ValueError(f"denominator must be one of {self.DENOMINATORS}, got {denominator!r}")
        self.units = units
        self.denominator = denominator
        self.category_of = torch.as_tensor(list(category_of), dtype=torch.long, device=device)
        self.labels = len(category_of)
        self.categories = int(self.category_of.max().item()) + 1
        self.intersection = torch.zeros(units, self.labels, dtype=torch.int64, device=device)
        self.unit_area = torch.zeros(units, self.categories, dtype=torch.int64, device=device)
        self.label_area = torch.zeros(self.labels, dtype=torch.int64, device=device)
        self.images = 0
        valid = self.category_of >= 0
        self._label_category = torch.zeros(self.labels, self.categories, device=device)
        self._label_category[valid.nonzero()[:, 0], self.category_of[valid]] = 1

    def add(self, masks: torch.Tensor, label_maps: torch.Tensor) -> None:
        """``masks``: (n, units, H, W) bool; ``label_maps``: (n, channels, H, W) label numbers.

        Intersections are counted as (mask x one-hot labels) matrix products over chunks of images
        small enough to bound the temporary memory; chunk sums stay far below 2^24, so the float
        products are exact integers.
        """
        n, units, h, w = masks.shape
        if units != self.units or label_maps.shape[0] != n or label_maps.shape[2:] != (h, w):
            raise ValueError(f"masks {tuple(masks.shape)} and labels {tuple(label_maps.shape)} do not match")
        device = self.intersection.device
        chunk = max(1, (1 << 22) // max(units * h * w, 1))
        for start in range(0, n, chunk):
            self._add_chunk(masks[start:start + chunk].to(device), label_maps[start:start + chunk].to(device).long())
        self.images += n

    def _add_chunk(self, masks: torch.Tensor, label_maps: torch.Tensor) -> None:
        n, units, h, w = masks.shape
        flat_masks = masks.reshape(n, units, h * w).float()
        unit_pixels = flat_masks.sum(2).long()  # (n, units)
        area, present = _label_areas_and_presence(label_maps, self.category_of, self.labels, self.categories)
        self.label_area += area
        if float(unit_pixels.sum()) < SPARSE_DENSITY * n * units * h * w:
            per_image = self._intersections_sparse(masks.reshape(n, units, h * w), label_maps.reshape(n, -1, h * w))
        else:
            per_image = torch.zeros(n, units, self.labels, device=flat_masks.device)
            for channel in range(label_maps.shape[1]):
                labels = label_maps[:, channel].reshape(n, h * w)
                onehot = torch.nn.functional.one_hot(labels, self.labels).float()  # (n, HW, labels)
                per_image += torch.bmm(flat_masks, onehot)  # (n, units, labels)
        per_image[:, :, 0] = 0
        self.intersection += per_image.sum(0).round().long()
        if self.denominator == "mask":
            # charged to a category only where its labels lie under the unit's mask (NetDissect-Lite)
            carries = (per_image @ self._label_category) > 0  # (n, units, categories)
        else:
            # charged to every category present in the image
            carries = present[:, None, :].expand(n, units, self.categories)
        self.unit_area += (unit_pixels[:, :, None] * carries).sum(0)

    def count_labels(self, label_maps: torch.Tensor) -> None:
        """Add the label areas (and images) of a batch whose masks come through ``add_pairs``."""
        n = label_maps.shape[0]
        area, present = _label_areas_and_presence(label_maps.to(self.intersection.device).long(), self.category_of,
                                                  self.labels, self.categories)
        self.label_area += area
        self._present = present
        self.images += n

    def add_pairs(self, images: torch.Tensor, units: torch.Tensor, masks: torch.Tensor, label_maps: torch.Tensor) -> None:
        """Masks of chosen (image, unit) pairs only, ``masks`` (P, H, W) bool with ``images`` and
        ``units`` (P,) indices into the batch's ``label_maps`` (n, channels, H, W), after
        ``count_labels(label_maps)``. Pairs left out count as empty masks."""
        pair, pixel = masks.to(self.intersection.device).reshape(masks.shape[0], -1).nonzero(as_tuple=True)
        self.add_active(images, units, pair, pixel, label_maps)

    def add_active(self, images: torch.Tensor, units: torch.Tensor, pair: torch.Tensor, pixel: torch.Tensor,
                   label_maps: torch.Tensor) -> None:
        """Like ``add_pairs``, with each pair's mask given as its active pixels: (pair number,
        flat pixel index) for every one (``dissect_core.crops.active_pixels``)."""
        device = self.intersection.device
        images, units = images.to(device), units.to(device)
        pairs = images.shape[0]
        if pairs == 0:
            return
        labels = label_maps.to(device).long().reshape(label_maps.shape[0], label_maps.shape[1], -1)
        per_pair, pixels = self._pair_label_counts(pair.to(device), pixel.to(device), pairs, images, labels)
        per_pair[:, 0] = 0
        self.intersection.index_add_(0, units, per_pair)
        if self.denominator == "mask":
            carries = (per_pair.float() @ self._label_category) > 0
        else:
            carries = self._present[images]
        self.unit_area.index_add_(0, units, pixels[:, None] * carries)

    def _intersections_sparse(self, masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(n, units, labels) counts over the active pixels only (every (image, unit) map a pair):
        for the sparse masks of Network Dissection (top 0.5 %) far cheaper than one-hot products."""
        n, units, hw = masks.shape
        images = torch.arange(n, device=masks.device).repeat_interleave(units)
        pair, pixel = masks.reshape(n * units, hw).nonzero(as_tuple=True)
        return self._pair_label_counts(pair, pixel, n * units, images, labels)[0].view(n, units, -1).float()

    def _pair_label_counts(self, pair: torch.Tensor, pixel: torch.Tensor, pairs: int, images: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For active pixels (``pair``, ``pixel``) of ``pairs`` masks, mask p on image ``images[p]``:
        (pairs, labels) int64 counts of each mask's active pixels carrying each label over all
        channels of ``labels`` (n, channels, HW), by one bincount over (pair, label); and (pairs,)
        its active pixels (counted from the same pixels, not a widening sum)."""
        _, channels, hw = labels.shape
        where = images[pair] * (channels * hw) + pixel
        found = torch.cat([labels.reshape(-1).take(where + c * hw) for c in range(channels)])
        counts = torch.bincount(pair.repeat(channels) * self.labels + found, minlength=pairs * self.labels)
        return counts.view(pairs, self.labels), torch.bincount(pair, minlength=pairs)

    def merge(self, other: IoUTally) -> None:
        self.intersection += other.intersection
        self.unit_area += other.unit_area
        self.label_area += other.label_area
        self.images += other.images

    def all_reduce(self) -> None:
        dist = _dist()
        if dist is None:
            return
        for tensor in (self.intersection, self.unit_area, self.label_area):
            dist.all_reduce(tensor)
        images = torch.tensor([self.images], dtype=torch.int64, device=self.intersection.device)
        dist.all_reduce(images)
        self.images = int(images.item())

    def iou(self) -> torch.Tensor:
        """(units, labels) IoU = I / (unit area in images of the label's category + label area − I)."""
        cats = self.category_of.clamp(min=0)
        unit_area = self.unit_area[:, cats].double()
        union = unit_area + self.label_area[None, :].double() - self.intersection.double()
        iou = torch.where(union > 0, self.intersection.double() / union.clamp(min=1), torch.zeros_like(union))
        iou[:, self.category_of < 0] = 0
        return iou.float()

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"intersection": self.intersection.cpu(), "unit_area": self.unit_area.cpu(),
                "label_area": self.label_area.cpu(), "images": self.images, "category_of": self.category_of.cpu()}

    def load_state_dict(self, state: dict) -> None:
        device = self.intersection.device
        self.intersection = state["intersection"].to(device)
        self.unit_area = state["unit_area"].to(device)
        self.label_area = state["label_area"].to(device)
        self.images = int(state["images"])


class LevelTally:
    """Unit x label counts at every one of ``K`` candidate levels per unit, in one pass.

    Each activation falls in bucket ``b`` = the number of the unit's candidate levels strictly below
    it, so "activation > level k" is "bucket > k". Tallied per (unit, bucket): pixels per label
    (``label_counts``), pixels overall (``unit_counts``) and pixels in images that carry each
    category (``category_counts``, for category-aware denominators). ``at_levels`` turns them into
    cumulative counts for every candidate level. int64 sums, so shards merge exactly.
    """

    def __init__(self, levels: torch.Tensor, category_of: Sequence[int]) -> None:
        if levels.dim() != 2 or levels.shape[1] < 1:
            raise ValueError(f"levels must be (units, candidates), got {tuple(levels.shape)}")
        device = levels.device
        self.levels = levels.float().sort(dim=1).values.contiguous()
        self.units, self.candidates = self.levels.shape
        self.buckets = self.candidates + 1
        self.category_of = torch.as_tensor(list(category_of), dtype=torch.long, device=device)
        self.labels = len(category_of)
        self.categories = int(self.category_of.max().item()) + 1
        self.label_counts = torch.zeros(self.units, self.buckets, self.labels, dtype=torch.int64, device=device)
        self.unit_counts = torch.zeros(self.units, self.buckets, dtype=torch.int64, device=device)
        self.category_counts = torch.zeros(self.units, self.buckets, self.categories, dtype=torch.int64, device=device)
        self.label_area = torch.zeros(self.labels, dtype=torch.int64, device=device)
        self.pixels = 0
        self.images = 0

    def add(self, activations: torch.Tensor, label_maps: torch.Tensor) -> None:
        """``activations``: (n, units, H, W) on the label grid; ``label_maps``: (n, channels, H, W)."""
        n, units, h, w = activations.shape
        if units != self.units or label_maps.shape[0] != n or label_maps.shape[2:] != (h, w):
            raise ValueError(f"activations {tuple(activations.shape)} and labels {tuple(label_maps.shape)} do not match")
        device = self.levels.device
        values = activations.to(device).float().permute(1, 0, 2, 3).reshape(units, n * h * w).contiguous()
        # bucket = number of the unit's levels strictly below the value, offset by the unit's row
        # (int32 throughout: units x buckets x labels stays far below 2^31)
        cell = torch.searchsorted(self.levels, values, out_int32=True)
        del values
        cell += torch.arange(0, units * self.buckets, self.buckets, device=device, dtype=torch.int32)[:, None]
        label_maps = label_maps.to(device).long()
        area, present = _label_areas_and_presence(label_maps, self.category_of, self.labels, self.categories)
        self.label_area += area
        cells = units * self.buckets
        if n > 1:  # the per-image counts the category counts need
            per_image = cell.view(units, n, h * w) + torch.arange(0, n * cells, cells, device=device,
                                                                   dtype=torch.int32)[None, :, None]
            image_counts = torch.bincount(per_image.view(-1), minlength=n * cells).view(n, units, self.buckets)
            del per_image
        cell *= self.labels
        # the (cell, label) keys of several channels in one bincount: fewer zeroed count arrays and
        # sums, while the keys stay within KEY_BYTES (below glibc's mmap ceiling: reused, not faulted)
        channels = label_maps.shape[1]
        labels = label_maps.to(torch.int32).permute(1, 0, 2, 3).reshape(channels, 1, n * h * w)
        group = max(1, KEY_BYTES // (4 * cell.numel()))
        found: torch.Tensor | None = None
        for first in range(0, channels, group):
            keys = cell[None] + labels[first:first + group]
            part = torch.bincount(keys.view(-1), minlength=cells * self.labels)
            del keys
            found = part if found is None else found.add_(part)
        del cell
        assert found is not None  # label maps have at least one channel
        counts = found.view(units, self.buckets, self.labels)
        if n == 1:  # each pixel has one label per channel, so a cell's counts sum to channels x its pixels
            image_counts = (counts.sum(2) // channels).view(1, units, self.buckets)
        counts[:, :, 0] = 0  # label 0 (no label) was counted too: no masked copy of the keys
        self.unit_counts += image_counts.sum(0)
        self.label_counts += counts
        self.category_counts += torch.einsum("nub,nc->ubc", image_counts.double(), present.double()).round().long()
        self.pixels += n * h * w
        self.images += n

    def at_levels(self) -> dict[str, torch.Tensor]:
        """Counts of "activation > candidate level k" for every k: ``intersection`` (units, K,
        labels), ``unit_area`` (units, K), ``category_area`` (units, K, categories), plus
        ``label_area`` and ``pixels``."""

        def above(counts: torch.Tensor) -> torch.Tensor:  # sum over buckets b > k, for k < K
            return counts.flip(1).cumsum(1).flip(1)[:, 1:]

        return {"intersection": above(self.label_counts), "unit_area": above(self.unit_counts),
                "category_area": above(self.category_counts), "label_area": self.label_area,
                "pixels": torch.tensor(self.pixels, device=self.label_area.device)}

    def merge(self, other: LevelTally) -> None:
        if not torch.equal(self.levels, other.levels):
            raise ValueError("level tallies with different candidate levels do not merge")
        self.label_counts += other.label_counts
        self.unit_counts += other.unit_counts
        self.category_counts += other.category_counts
        self.label_area += other.label_area
        self.pixels += other.pixels
        self.images += other.images

    def all_reduce(self) -> None:
        dist = _dist()
        if dist is None:
            return
        for tensor in (self.label_counts, self.unit_counts, self.category_counts, self.label_area):
            dist.all_reduce(tensor)
        sizes = torch.tensor([self.pixels, self.images], dtype=torch.int64, device=self.label_area.device)
        dist.all_reduce(sizes)
        self.pixels, self.images = (int(v) for v in sizes.tolist())

    def iou_tally(self, index: torch.Tensor) -> IoUTally:
        """The IoU tally of these images with every unit thresholded at its candidate level
        ``index[u]`` ("image" denominators): "activation > level k" is "bucket > k", so these are
        the counts a pass over the same pixels would make, read off without one."""
        rows = torch.arange(self.units, device=self.levels.device)
        index = index.to(self.levels.device)
        counts = self.at_levels()
        tally = IoUTally(self.units, self.category_of.tolist(), self.levels.device, denominator="image")
        tally.intersection = counts["intersection"][rows, index].clone()
        tally.unit_area = counts["category_area"][rows, index].clone()
        tally.label_area = self.label_area.clone()
        tally.images = self.images
        return tally


class ConceptFeatures:
    """Mean layer feature of each label over the cells it covers at least ``min_share`` of.

    Cells are the layer's grid; the label maps' side must be a multiple of it. A pixel counts for
    its label in every channel (categories have disjoint labels). Sums are float64 in a fixed
    order per batch, so one process and a sharded run agree to float rounding of the final sum.
    """

    def __init__(self, units: int, labels: int, device: torch.device | str = "cpu", min_share: float = 0.5) -> None:
        self.units, self.labels, self.min_share = units, labels, min_share
        self.feature_sum = torch.zeros(labels, units, dtype=torch.float64, device=device)
        self.cells = torch.zeros(labels, dtype=torch.int64, device=device)

    def add(self, features: torch.Tensor, label_maps: torch.Tensor) -> None:
        """``features``: (n, units, h, w); ``label_maps``: (n, channels, H, W) with H a multiple of h."""
        n, units, h, w = features.shape
        big_h, big_w = label_maps.shape[-2:]
        if units != self.units or label_maps.shape[0] != n or big_h % h or big_w % w:
            raise ValueError(f"features {tuple(features.shape)} and labels {tuple(label_maps.shape)} do not match")
        device = self.feature_sum.device
        # per-cell label counts by bincount (a one-hot at label resolution would be labels x larger)
        cell = (torch.arange(big_h, device=device) // (big_h // h))[:, None] * w + (
            torch.arange(big_w, device=device) // (big_w // w))[None, :]
        index = (torch.arange(n, device=device)[:, None, None] * (h * w) + cell[None]) * self.labels
        counts = torch.zeros(n * h * w * self.labels, dtype=torch.int64, device=device)
        for channel in range(label_maps.shape[1]):
            labels = label_maps[:, channel].to(device).long()
            counts += torch.bincount((index + labels).flatten(), minlength=counts.numel())
        share = counts.view(n, h, w, self.labels).float() / ((big_h // h) * (big_w // w))
        covered = share >= self.min_share
        covered[..., 0] = False
        self.feature_sum += torch.einsum("nhwl,nuhw->lu", covered.double(), features.to(device).double())
        self.cells += covered.sum((0, 1, 2))

    def mean(self) -> torch.Tensor:
        """(labels, units) mean feature (zeros for labels that covered no cell)."""
        return (self.feature_sum / self.cells.clamp(min=1)[:, None]).float()

    def merge(self, other: ConceptFeatures) -> None:
        self.feature_sum += other.feature_sum
        self.cells += other.cells

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"feature_sum": self.feature_sum.cpu(), "cells": self.cells.cpu()}

    def load_state_dict(self, state: dict) -> None:
        device = self.feature_sum.device
        self.feature_sum, self.cells = state["feature_sum"].to(device), state["cells"].to(device)

    def all_reduce(self) -> None:
        dist = _dist()
        if dist is not None:
            dist.all_reduce(self.feature_sum)
            dist.all_reduce(self.cells)
