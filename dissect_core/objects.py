"""Painted objects judged as objects: connected regions, their shape, their support, side effects.

The share of a painted window's pixels that a segmenter labels as the concept says nothing about
whether a person sees a door there: a brown blob that swallows the windows scores well. Here an
object is a connected region (8-neighbour) of one concept in a label map, described by

- ``area`` (pixels at the label map's size), ``aspect`` (box height / width) and ``fill`` (area /
  box area): its shape and its size;
- ``support``: the share of the pixels it rests on that are what such objects rest on. For most
  concepts these are the first pixels *below* the region in each of its columns (a door stands on
  road or grass, a dome on a building, a tree on the ground); for a window, the ring of pixels
  *around* it (a window sits in a wall).

``ObjectRules`` are calibrated on the GAN's own objects in unedited samples (``calibrate``): each
measure must lie within the central range that holds most of them. A painted object is the largest
region of the concept that overlaps the painted window; it passes when its measures do and the
existing doors and windows elsewhere survive the edit (``kept_objects``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from models.world.labels import LABEL_BY_NAME

__all__ = ["SUPPORT", "ObjectMeasure", "ObjectRules", "regions", "measure", "calibrate", "painted_object",
           "kept_objects", "objects_of", "summarise"]

_EIGHT = np.ones((3, 3), bool)

SUPPORT: dict[str, tuple[str, tuple[str, ...]]] = {
    "door": ("below", ("road", "grass")),
    "dome": ("below", ("building", "tower")),
    "tree": ("below", ("grass", "road", "water")),
    "tower": ("below", ("building", "grass", "road")),
    "lamp": ("below", ("grass", "road")),
    "window": ("around", ("building", "door", "window", "tower")),
}
"""Per concept: where its support is read (``below`` or ``around``) and the labels that count."""


@dataclass(frozen=True)
class ObjectMeasure:
    area: int
    aspect: float
    """Bounding-box height / width."""
    fill: float
    """Area / bounding-box area."""
    support: float
    """Share of the supporting pixels whose label is one the concept rests on (0 when it has none:
    a region touching the image's bottom edge has nothing below it)."""


def regions(labels: np.ndarray, number: int, min_area: int = 1) -> list[np.ndarray]:
    """Boolean masks of the 8-connected regions of label ``number`` with at least ``min_area`` pixels."""
    components, count = ndimage.label(labels == number, structure=_EIGHT)
    masks = [components == k for k in range(1, count + 1)]
    return [m for m in masks if int(m.sum()) >= min_area]


def _support_pixels(labels: np.ndarray, region: np.ndarray, where: str) -> np.ndarray:
    """The labels of the pixels a region rests on."""
    if where == "around":
        ring = ndimage.binary_dilation(region, _EIGHT) & ~region
        return labels[ring]
    ys, xs = np.nonzero(region)
    below = []
    for x in np.unique(xs):
        y = int(ys[xs == x].max()) + 1
        if y < labels.shape[0]:
            below.append(labels[y, x])
    return np.asarray(below, dtype=labels.dtype)


def measure(labels: np.ndarray, region: np.ndarray, concept: str) -> ObjectMeasure:
    """Shape and support of one region of ``concept`` in an (H, W) label map."""
    ys, xs = np.nonzero(region)
    if not len(ys):
        raise ValueError("empty region")
    height, width = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    area = int(region.sum())
    where, names = SUPPORT[concept]
    numbers = [LABEL_BY_NAME[n].number for n in names]
    support = _support_pixels(labels, region, where)
    share = float(np.isin(support, numbers).mean()) if support.size else 0.0
    return ObjectMeasure(area=area, aspect=height / width, fill=area / (height * width), support=share)


def objects_of(labels: np.ndarray, concept: str, min_area: int) -> list[ObjectMeasure]:
    """Measures of every region of ``concept`` with at least ``min_area`` pixels."""
    number = LABEL_BY_NAME[concept].number
    return [measure(labels, r, concept) for r in regions(labels, number, min_area)]


@dataclass(frozen=True)
class ObjectRules:
    """What counts as a ``concept`` object: ranges calibrated on the GAN's own objects."""

    concept: str
    min_area: int
    area: tuple[float, float]
    aspect: tuple[float, float]
    fill: float
    support: float

    def failures(self, m: ObjectMeasure | None) -> list[str]:
        """The rules ``m`` breaks (``["missing"]`` when there is no object)."""
        if m is None:
            return ["missing"]
        out = []
        if not self.area[0] <= m.area <= self.area[1]:
            out.append("size")
        if not self.aspect[0] <= m.aspect <= self.aspect[1]:
            out.append("aspect")
        if m.fill < self.fill:
            out.append("fill")
        if m.support < self.support:
            out.append("support")
        return out

    def passes(self, m: ObjectMeasure | None) -> bool:
        return not self.failures(m)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def calibrate(concept: str, measures: Sequence[ObjectMeasure], min_area: int, tail: float = 0.05) -> ObjectRules:
    """Rules that each keep all but the ``tail`` share (per side) of the GAN's own objects ``measures``.

    Size and aspect get a two-sided range ``[q(tail), q(1 - tail)]`` (with a 10 % margin); fill
    and support only a lower bound ``q(tail)`` (more filled or better supported is never worse)."""
    if len(measures) < 10:
        raise ValueError(f"{concept}: {len(measures)} objects are too few to calibrate on (10 needed)")
    area = np.array([m.area for m in measures], float)
    aspect = np.array([m.aspect for m in measures], float)
    fill = np.array([m.fill for m in measures], float)
    support = np.array([m.support for m in measures], float)
    lo, hi = tail * 100, (1 - tail) * 100
    return ObjectRules(
        concept=concept, min_area=min_area,
        area=(max(float(min_area), float(np.percentile(area, lo)) * 0.9), float(np.percentile(area, hi)) * 1.1),
        aspect=(float(np.percentile(aspect, lo)) * 0.9, float(np.percentile(aspect, hi)) * 1.1),
        fill=float(np.percentile(fill, lo)) * 0.9,
        support=float(np.percentile(support, lo)),
    )


def painted_object(labels: np.ndarray, concept: str, window: np.ndarray, min_area: int) -> ObjectMeasure | None:
    """The largest region of ``concept`` (at least ``min_area`` pixels) that overlaps the boolean
    ``window`` mask, measured; ``None`` when the edit drew none."""
    number = LABEL_BY_NAME[concept].number
    touching = [r for r in regions(labels, number, min_area) if (r & window).any()]
    if not touching:
        return None
    return measure(labels, max(touching, key=lambda r: int(r.sum())), concept)


def kept_objects(before: np.ndarray, after: np.ndarray, concepts: Iterable[str], exclude: np.ndarray,
                 min_area: int, keep: float = 0.5) -> tuple[int, int]:
    """``(kept, total)`` over the existing regions of ``concepts`` in ``before`` that do not overlap
    ``exclude`` (the painted window): kept when at least ``keep`` of its pixels keep their label."""
    kept = total = 0
    for concept in concepts:
        number = LABEL_BY_NAME[concept].number
        for region in regions(before, number, min_area):
            if (region & exclude).any():
                continue
            total += 1
            kept += int(float((after[region] == number).mean()) >= keep)
    return kept, total


def summarise(measures: Sequence[ObjectMeasure | None], rules: ObjectRules) -> dict[str, object]:
    """Pass rate, failure counts and median measures of a set of (possibly missing) objects."""
    present = [m for m in measures if m is not None]
    reasons: dict[str, int] = {}
    for m in measures:
        for reason in rules.failures(m):
            reasons[reason] = reasons.get(reason, 0) + 1
    medians: Mapping[str, float] = {
        key: round(float(np.median([getattr(m, key) for m in present])), 3) for key in ("area", "aspect", "fill", "support")
    } if present else {}
    return {"objects": len(measures), "pass_rate": round(float(np.mean([rules.passes(m) for m in measures])), 4) if measures else None,
            "failures": reasons, "median": dict(medians)}
