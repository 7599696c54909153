"""Object placement: a brush stroke becomes the footprint where the GAN draws that object.

Painting a concept's units over a user's whole stroke draws the concept's texture in the stroke's
shape: a 2x2-cell dome stroke above a roof gives a ball as tall as it is wide, and a one-cell dab
is too small for the generator to draw a dome at all. The GAN's own domes have a scale and a
support: at the 8x8 edit layer of a 128 px ProGAN a dome is about two cells wide and one tall and
sits right on a roof. ``footprint`` moves a dome stroke to that place inside (or, by at most one
cell, next to or below) what the user painted, from the unedited image's labels: the lowest row of
painted sky cells right above a roof, two cells wide (a one-cell dab grows by its neighbour above
the same roof; a stroke that ends one cell above the roof line drops onto it).

A stroke with no such place, and every other concept, keeps its mask: placement never refuses.
Doors were tried the same way (one column at the wall's foot, one or two cells tall, at several
strengths) and judged worse by ``bench/paint_objects.py`` than the plain stroke, so door strokes
are not placed (docs/benchmarks.md has the numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from dissect_core.intervene import pool_mask
from models.world.labels import LABEL_BY_NAME

__all__ = ["PLACED", "SCENE_GROUPS", "cell_shares", "scene_cells", "footprint", "place_mask"]

PLACED = ("dome",)
"""Concepts whose brush strokes are placed."""

_GROUPS = {"sky": ("sky", "cloud"), "building": ("building", "window", "door")}
SCENE_GROUPS = tuple(_GROUPS)
"""The keys of ``scene_cells``."""


def cell_shares(objects: np.ndarray, grid: int, numbers: Sequence[int]) -> np.ndarray:
    """(H, W) label numbers -> (grid, grid) share of each cell's pixels whose label is in ``numbers``."""
    cell = objects.shape[-1] // grid
    blocks = objects[: cell * grid, : cell * grid].reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, -1)
    return np.isin(blocks, list(numbers)).mean(-1)


def scene_cells(objects: np.ndarray, grid: int, labels: Sequence[tuple[str, str]] | None = None) -> dict[str, np.ndarray]:
    """(H, W) object label numbers -> per group (sky, building) the (grid, grid) share of each
    cell's pixels in it. ``labels`` is the segmenter's ``(name, category)`` list (a label counts
    by its first name, so ``"building, edifice"`` is a building); default: the scene world's."""
    if labels is None:
        numbers = {group: [LABEL_BY_NAME[n].number for n in names] for group, names in _GROUPS.items()}
    else:
        first = [name.split(",")[0].strip().lower() for name, _ in labels]
        numbers = {group: [i for i, name in enumerate(first) if i and name in names] for group, names in _GROUPS.items()}
    return {group: cell_shares(objects, grid, ids) for group, ids in numbers.items()}


def _roof_top(cells: Mapping[str, np.ndarray]) -> np.ndarray:
    sky, building = cells["sky"], cells["building"]
    below = np.zeros_like(building)
    below[:-1] = building[1:]
    return (sky >= 0.6) & (below >= 0.5)


def footprint(concept: str, painted: np.ndarray, cells: Mapping[str, np.ndarray]) -> np.ndarray:
    """The (grid, grid) bool cells a ``concept`` stroke over ``painted`` cells should edit."""
    painted = np.asarray(painted, bool)
    if concept == "dome":
        roof = _roof_top(cells)
        spots = roof & painted
        if not spots.any():  # painted just above the roof line: drop by one cell onto it
            lowered = np.zeros_like(painted)
            lowered[1:] = painted[:-1]
            spots = roof & lowered
        if not spots.any():
            return painted
        y = int(np.nonzero(spots.any(axis=1))[0].max())
        xs = np.nonzero(spots[y])[0].tolist()
        out = np.zeros_like(painted)
        pairs = [x for x in xs if x + 1 in xs]
        if pairs:
            x = pairs[(len(pairs) - 1) // 2]
            out[y, x] = out[y, x + 1] = True
            return out
        x = xs[(len(xs) - 1) // 2]
        out[y, x] = True
        neighbours = [n for n in (x - 1, x + 1) if 0 <= n < painted.shape[1] and roof[y, n]]
        if neighbours:
            below = cells["building"][min(y + 1, painted.shape[0] - 1)]
            out[y, max(neighbours, key=lambda n: below[n])] = True
        return out
    return painted


def place_mask(concept: str, mask: torch.Tensor, cells: Mapping[str, np.ndarray]) -> torch.Tensor:
    """The (H, W) mask a ``concept`` stroke paints instead of ``mask`` (max-pooled to the grid of
    ``cells`` as the painter pools it): its footprint, or ``mask`` itself where it has none."""
    grid = next(iter(cells.values())).shape
    painted = pool_mask(mask, grid).cpu().numpy() > 0
    placed = footprint(concept, painted, cells)
    if (placed == painted).all():
        return mask
    return F.interpolate(torch.from_numpy(placed).float()[None, None], size=tuple(mask.shape), mode="nearest")[0, 0]
