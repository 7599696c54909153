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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from dissect_core.intervene import Stroke, apply_edit, brush_edit, edit_maps
from dissect_core.placement import PLACED, cell_shares, place_mask, scene_cells
from models.samples import z_tensor
from models.world.labels import LABEL_BY_NAME

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["CONTEXTS", "Window", "painting_contexts", "paint_share", "painted_images", "placed_masks", "render_samples",
           "window_mask", "removal_share", "brush_stroke"]

CONTEXTS = ("ground", "sky", "building_top", "wall", "wall_foot")


@dataclass(frozen=True)
class Window:
    image: int
    y: int
    x: int
    context: str
    size: int = 2


def painting_contexts(objects: np.ndarray, grid: int, concept: int, names: Mapping[str, int] | None = None,
                      size: int = 2) -> dict[str, list[tuple[int, int]]]:
    """(H, W) object labels -> context -> top-left cells ``(y, x)`` of ``size`` x ``size`` windows
    where ``concept`` is absent. ``names`` maps label names to numbers (default: the scene world's)."""
    if names is None:
        names = {name: label.number for name, label in LABEL_BY_NAME.items()}
    sky = cell_shares(objects, grid, [names["sky"], names["cloud"]])
    ground = cell_shares(objects, grid, [names["grass"], names["road"]])
    building = cell_shares(objects, grid, [names["building"], names["window"], names["door"]])
    tree = cell_shares(objects, grid, [names["tree"]])
    has = cell_shares(objects, grid, [concept]) > 0
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
            top, bottom = building[y, x:x + size], y + size - 1
            if top.min() >= 0.6 and (
                    (bottom > y and ground[bottom, x:x + size].min() >= 0.15)
                    or (bottom + 1 < grid and building[bottom, x:x + size].min() >= 0.5
                        and ground[bottom + 1, x:x + size].min() >= 0.5)):
                out["wall_foot"].append((y, x))  # a wall whose foot is in the window or just below it
    return out


def window_mask(window: Window, size: int, grid: int, border: int = 0) -> torch.Tensor:
    """(size, size) float mask of a window's cells (and ``border`` cells around them)."""
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
def painted_images(generator: ProgressiveGenerator, layer: str, x: torch.Tensor, windows: Sequence[Window],
                   stroke_for: Callable[[torch.Tensor], Stroke], size: int,
                   masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """The images after painting each window with its stroke, in [-1, 1], exactly as the painter
    renders them (``edit_maps`` -> ``apply_edit`` -> the layers after ``layer``). ``masks``, when
    given, are the (size, size) masks actually painted (a placed brush's footprints), one per window."""
    channels, grid, _ = x.shape[1:]
    edited = []
    for i, w in enumerate(windows):
        mask = masks[i] if masks is not None else window_mask(w, size, grid)
        a, b = edit_maps([stroke_for(mask)], (channels, grid, grid), x.device)
        edited.append(apply_edit(x[w.image], a, b))
    return generator.forward_from(layer, torch.stack(edited)).clamp(-1, 1)


def placed_masks(concept: str, windows: Sequence[Window], labels: np.ndarray, grid: int, size: int) -> list[torch.Tensor] | None:
    """The (size, size) masks the painter paints for ``windows`` of a placed brush
    (``dissect_core.placement``; ``labels[i]`` is image i's unedited object label map), or ``None``
    for a concept that is not placed."""
    if concept not in PLACED:
        return None
    return [place_mask(concept, window_mask(w, size, grid), scene_cells(labels[w.image], grid)) for w in windows]


@torch.no_grad()
def render_samples(generator: ProgressiveGenerator, layer: str, ids: Sequence[int],
                   batch: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit-layer activations and unedited images in [-1, 1] of sample ``ids``, in batches."""
    xs, images = [], []
    for b in range(0, len(ids), batch):
        x = generator.forward_to(layer, z_tensor(list(ids[b:b + batch]), generator.z_dim))
        xs.append(x)
        images.append(generator.forward_from(layer, x).clamp(-1, 1))
    return torch.cat(xs), torch.cat(images)


@torch.no_grad()
def paint_share(generator: ProgressiveGenerator, layer: str, x: torch.Tensor, images: torch.Tensor,
                windows: Sequence[Window], stroke_for: Callable[[torch.Tensor], Stroke],
                segment: Callable[[torch.Tensor], torch.Tensor], concept: int,
                masks: Sequence[torch.Tensor] | None = None) -> list[PaintResult]:
    """For each window: the share of its pixels labelled ``concept`` after painting, and the mean and
    the largest absolute pixel change outside it and its one-cell border (0..255). ``x`` are the unedited layer activations of the
    images, ``images`` the unedited outputs in [-1, 1]; ``stroke_for(mask)`` builds the stroke; ``masks``
    (optional) are what is painted instead of each window (a placed brush's footprint): the share
    and the outside change are still taken over the window the user painted."""
    if not windows:
        return []
    grid = x.shape[-1]
    size = images.shape[-1]
    out_images = painted_images(generator, layer, x, windows, stroke_for, size, masks)
    labels = segment(out_images)
    label_size = labels.shape[-1]
    results = []
    for row, w in enumerate(windows):
        inside = F.interpolate(window_mask(w, size, grid)[None, None], size=label_size, mode="nearest")[0, 0] > 0
        share = float((labels[row][inside] == concept).float().mean())
        keep = window_mask(w, size, grid, border=1) == 0
        change = (out_images[row] - images[w.image]).abs().mean(0)[keep.to(out_images.device)]
        if change.numel():
            results.append(PaintResult(share, float(change.mean()) * 127.5, float(change.max()) * 127.5))
        else:
            results.append(PaintResult(share, 0.0, 0.0))
    return results


@torch.no_grad()
def removal_share(generator: ProgressiveGenerator, layer: str, x: torch.Tensor, before: torch.Tensor,
                  stroke: Stroke, segment: Callable[[torch.Tensor], torch.Tensor], concept: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, (concept pixels before, concept pixels removed) when ``stroke`` is applied to every
    image. ``before`` are the label maps of the unedited images. Pooled over images these give the
    share of all concept pixels removed; per image, how much of each image's objects went away."""
    channels, grid, _ = x.shape[1:]
    a, b = edit_maps([stroke], (channels, grid, grid), x.device)
    after = segment(generator.forward_from(layer, apply_edit(x, a, b)).clamp(-1, 1))
    had = before == concept
    n_before = had.flatten(1).sum(1)
    n_after = ((after == concept) & had).flatten(1).sum(1)
    return n_before.cpu().numpy(), (n_before - n_after).cpu().numpy()


def brush_stroke(table, concept: str, action: str, strength: float) -> Callable[[torch.Tensor], Stroke]:
    """``mask -> Stroke`` for a concept brush, built by the painter's own rule."""
    edit = brush_edit(table, concept, action, strength)  # type: ignore[arg-type]
    return lambda mask: edit.stroke(action, mask)  # type: ignore[arg-type]
