"""Does painting work? The measures a sceptical user would accept, by context.

- ``painting_contexts``: for one image's object label map, the 2x2-cell windows of the edit layer
  where a concept is absent, grouped by what is there: ``ground`` (grass / road, no tree),
  ``sky`` (sky and cloud only), ``building_top`` (the sky cells right above a building's top edge),
  ``wall`` (building wall).
- ``paint_share``: paint a brush stroke on those windows exactly as the painter does
  (``intervene.brush_edit`` -> ``edit_maps`` -> the layers after the edit) and report, per window,
  the share of its pixels that the segmenter then labels as the concept, and the mean absolute
  pixel change outside the window and its one-cell border (0..255 scale).
- ``removal_share``: remove a concept over the whole image at a strength; the share of its pixels
  that disappear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from dissect_core.intervene import Stroke, apply_edit, brush_edit, edit_maps

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["CONTEXTS", "Window", "painting_contexts", "paint_share", "removal_share", "brush_stroke"]

CONTEXTS = ("ground", "sky", "building_top", "wall")


@dataclass(frozen=True)
class Window:
    image: int
    y: int
    x: int
    context: str
    size: int = 2


def _cell_shares(objects: np.ndarray, grid: int, ids: Sequence[int]) -> np.ndarray:
    size = objects.shape[-1]
    cell = size // grid
    blocks = objects.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, -1)
    return np.isin(blocks, list(ids)).mean(-1)


def painting_contexts(objects: np.ndarray, grid: int, concept: int, names: dict[str, int],
                      size: int = 2) -> dict[str, list[tuple[int, int]]]:
    """(H, W) object labels -> context -> top-left cells ``(y, x)`` of ``size`` x ``size`` windows
    where ``concept`` is absent. ``names`` maps label names to numbers."""
    sky = _cell_shares(objects, grid, [names["sky"], names["cloud"]])
    ground = _cell_shares(objects, grid, [names["grass"], names["road"]])
    building = _cell_shares(objects, grid, [names["building"], names["window"], names["door"]])
    tree = _cell_shares(objects, grid, [names["tree"]])
    has = _cell_shares(objects, grid, [concept]) > 0
    out: dict[str, list[tuple[int, int]]] = {c: [] for c in CONTEXTS}
    for y in range(grid - size + 1):
        for x in range(grid - size + 1):
            win = (slice(y, y + size), slice(x, x + size))
            if has[win].any():
                continue
            if ground[win].min() >= 0.6 and not tree[win].any():
                out["ground"].append((y, x))
            if sky[win].min() >= 0.9:
                out["sky"].append((y, x))
            if y + size < grid and sky[y + size - 1, x:x + size].min() >= 0.6 and building[y + size, x:x + size].min() >= 0.5:
                out["building_top"].append((y, x))  # the window's bottom row is sky, the row below it wall
            if building[win].min() >= 0.6:
                out["wall"].append((y, x))
    return out


def _window_mask(window: Window, size: int, grid: int, border: int = 0) -> torch.Tensor:
    cell = size // grid
    mask = torch.zeros(size, size)
    y0, x0 = max(window.y - border, 0) * cell, max(window.x - border, 0) * cell
    y1 = min(window.y + window.size + border, grid) * cell
    x1 = min(window.x + window.size + border, grid) * cell
    mask[y0:y1, x0:x1] = 1
    return mask


class PaintResult(NamedTuple):
    share: float
    """Share of the painted window's pixels labelled as the concept."""
    outside_mean: float
    """Mean absolute change (0..255, averaged over RGB) of the pixels outside the window and its border."""
    outside_max: float
    """The largest such change of any one pixel."""


@torch.no_grad()
def paint_share(generator: ProgressiveGenerator, layer: str, x: torch.Tensor, images: torch.Tensor,
                windows: Sequence[Window], stroke_for: Callable[[torch.Tensor], Stroke],
                segment: Callable[[torch.Tensor], torch.Tensor], concept: int) -> list[PaintResult]:
    """For each window: the share of its pixels labelled ``concept`` after painting, and the mean and
    the largest absolute pixel change outside it and its one-cell border (0..255). ``x`` are the unedited layer activations of the
    images, ``images`` the unedited outputs in [-1, 1]; ``stroke_for(mask)`` builds the stroke."""
    if not windows:
        return []
    channels, grid, _ = x.shape[1:]
    size = images.shape[-1]
    edited = []
    for w in windows:
        a, b = edit_maps([stroke_for(_window_mask(w, size, grid))], (channels, grid, grid), x.device)
        edited.append(apply_edit(x[w.image], a, b))
    out_images = generator.forward_from(layer, torch.stack(edited)).clamp(-1, 1)
    labels = segment(out_images)
    label_size = labels.shape[-1]
    results = []
    for row, w in enumerate(windows):
        inside = F.interpolate(_window_mask(w, size, grid)[None, None], size=label_size, mode="nearest")[0, 0] > 0
        share = float((labels[row][inside] == concept).float().mean())
        keep = _window_mask(w, size, grid, border=1) == 0
        change = (out_images[row] - images[w.image]).abs().mean(0)[keep.to(out_images.device)]
        if change.numel():
            results.append(PaintResult(share, float(change.mean()) * 127.5, float(change.max()) * 127.5))
        else:
            results.append(PaintResult(share, 0.0, 0.0))
    return results


@torch.no_grad()
def removal_share(generator: ProgressiveGenerator, layer: str, x: torch.Tensor, before: torch.Tensor,
                  stroke: Stroke, segment: Callable[[torch.Tensor], torch.Tensor], concept: int) -> tuple[int, int]:
    """(concept pixels before, concept pixels removed) when ``stroke`` is applied to every image.
    ``before`` are the label maps of the unedited images."""
    channels, grid, _ = x.shape[1:]
    a, b = edit_maps([stroke], (channels, grid, grid), x.device)
    after = segment(generator.forward_from(layer, apply_edit(x, a, b)).clamp(-1, 1))
    n_before = int((before == concept).sum())
    n_after = int(((after == concept) & (before == concept)).sum())
    return n_before, n_before - n_after


def brush_stroke(table, concept: str, action: str, strength: float) -> Callable[[torch.Tensor], Stroke]:
    """``mask -> Stroke`` for a concept brush, built by the painter's own rule."""
    edit = brush_edit(table, concept, action, strength)  # type: ignore[arg-type]
    return lambda mask: edit.stroke(action, mask)  # type: ignore[arg-type]
