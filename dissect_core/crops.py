"""Active pixels of thresholded, upsampled maps, upsampling only the part of a map that can cross.

Dissection upsamples each unit's map bilinearly to the label grid and keeps the pixels above the
unit's level. With Network Dissection's top 0.5 % (or a GAN's top 1 %), a map that fires at all
does so around a peak of a few cells, yet upsampling the whole map costs ``size**2`` pixels.

Bilinear upsampling by an integer factor ``f`` (pixel centres aligned) splits the output into
"cells between centres": the pixels between source centres k-1 and k (and j-1 and j) are convex
combinations of those 2 x 2 sources only, and the border strips of the 1 or 2 sources they clamp
to. A region whose sources stay at or below the level, by more than the float rounding of such a
combination, has no active pixel. So each map is cut to the sources of the bounding box of its
other regions and only that crop is upsampled: for a hot cell, 2 x 2 sources, a quarter of a
``size**2`` map at f = 8. For a power-of-two factor the box's pixels get the same source cells,
the same weights (exact binary fractions) and the same arithmetic in the crop as in the whole map:
the same floats. ``crops_are_exact`` checks this once per geometry and device against the kernel
in use, and the whole-map path is used wherever it does not hold.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["active_pixels", "crops_are_exact", "crops_apply"]

MARGIN = 2.0**-16
"""Relative margin on a neighbourhood's maximum: a convex combination computed in float32 lies
within a few units in the last place (2^-23) of its sources' largest magnitude; this is 128."""
TINY = 2.0**-126
"""Absolute margin, for subnormal sources (rounded in absolute, not relative, steps)."""


def _upsample(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)


def crops_apply(h: int, w: int, size: int, device: torch.device | str = "cpu") -> bool:
    """Whether (h, w) maps on a ``size`` x ``size`` label grid can be cropped: a square map
    upsampled by a power-of-two factor (whose weights are exact binary fractions), when the
    device's kernel agrees (``crops_are_exact``)."""
    if h != w or size <= h or size % h:
        return False
    factor = size // h
    return factor & (factor - 1) == 0 and crops_are_exact(h, factor, str(torch.device(device)))


def _region_rows(first: torch.Tensor, last: torch.Tensor, h: int,
                 factor: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows (top, bottom) and output rows [start, stop) of regions ``first..last``: region
    k (0..h) lies between source centres k-1 and k, its sources clamped to 0..h-1."""
    half = factor // 2
    return ((first - 1).clamp(min=0), last.clamp(max=h - 1), (factor * first - half).clamp(min=0),
            (factor * last + half).clamp(max=factor * h))


@functools.lru_cache(maxsize=16)
def crops_are_exact(h: int, factor: int, device: str = "cpu") -> bool:
    """Every region box's crop of random (h, h) maps, upsampled by ``factor`` on ``device``,
    equals the whole map's upsampling there (checked once per geometry, device and process)."""
    generator = torch.Generator().manual_seed(0)
    maps = (torch.randn(4, 1, h, h, generator=generator) * 4).to(device)
    whole = _upsample(maps, h * factor, h * factor)
    full = (0, h - 1, 0, h * factor)  # every source and output row
    for first in range(h + 1):
        for last in range(first, h + 1):
            box = tuple(int(v) for v in _region_rows(torch.tensor(first), torch.tensor(last), h, factor))
            for rows, cols in ((box, box), (box, full), (full, box)):  # squares, row and column ranges
                crop = _upsample(maps[:, :, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1],
                                 (rows[1] - rows[0] + 1) * factor, (cols[1] - cols[0] + 1) * factor)
                inner = crop[:, :, rows[2] - rows[0] * factor:rows[3] - rows[0] * factor,
                             cols[2] - cols[0] * factor:cols[3] - cols[0] * factor]
                if not torch.equal(inner, whole[:, :, rows[2]:rows[3], cols[2]:cols[3]]):
                    return False
    return True


def active_pixels(maps: torch.Tensor, level: torch.Tensor, size: int,
                  chunk_values: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels above ``level`` (P,) of each map (P, h, w) upsampled to ``size`` x ``size``
    (``crops_apply`` must hold): (pair, flat pixel index) of every active pixel, exactly those of
    thresholding the whole upsampled maps (in another order). Crops of one shape are upsampled
    together, ``chunk_values`` upsampled values at a time."""
    pairs, h, w = maps.shape
    device = maps.device
    factor = size // h
    maps = maps.float()
    level = level.float().to(device)
    # the largest source of each region's (clamped) 2 x 2 block; -inf padding does the clamping
    reach = F.max_pool2d(maps[:, None], 2, stride=1, padding=1)[:, 0]  # (P, h + 1, w + 1)
    margin = reach.abs() * MARGIN + TINY
    live = ((reach + margin) > level[:, None, None]) | reach.isnan()
    rows, cols = live.any(2), live.any(1)  # (P, h + 1), (P, w + 1)
    keep = rows.any(1)
    if not bool(keep.any()):
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    index = torch.arange(h + 1, device=device)
    first_row = torch.where(rows, index, h + 1).amin(1)
    last_row = torch.where(rows, index, -1).amax(1)
    first_col = torch.where(cols, index, w + 1).amin(1)
    last_col = torch.where(cols, index, -1).amax(1)
    top, bottom, row_start, row_stop = _region_rows(first_row, last_row, h, factor)
    left, right, col_start, col_stop = _region_rows(first_col, last_col, w, factor)
    heights, widths = bottom - top + 1, right - left + 1
    shape_of = torch.where(keep, heights * (w + 1) + widths, -1)
    found_pair, found_pixel = [], []
    box = (row_start, row_stop, col_start, col_stop)
    for shape in torch.unique(shape_of[keep]).tolist():
        ch, cw = divmod(int(shape), w + 1)
        members = (shape_of == shape).nonzero()[:, 0]
        per_chunk = max(1, chunk_values // (ch * cw * factor * factor))
        for start in range(0, members.numel(), per_chunk):
            group = members[start:start + per_chunk]
            pair, pixel = _crop_pixels(maps, level, group, top, left, box, ch, cw, factor, size)
            found_pair.append(pair)
            found_pixel.append(pixel)
    return torch.cat(found_pair), torch.cat(found_pixel)


def _crop_pixels(maps: torch.Tensor, level: torch.Tensor, group: torch.Tensor, top: torch.Tensor,
                 left: torch.Tensor, box: tuple[torch.Tensor, ...], ch: int, cw: int, factor: int,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Active pixels of the maps ``group``, whose crops are ``ch`` x ``cw`` sources at (top, left)
    and whose boxes are [row_start, row_stop) x [col_start, col_stop) of the label grid."""
    device = maps.device
    row_start, row_stop, col_start, col_stop = box
    r = top[group][:, None] + torch.arange(ch, device=device)[None, :]
    c = left[group][:, None] + torch.arange(cw, device=device)[None, :]
    crops = maps[group[:, None, None], r[:, :, None], c[:, None, :]]
    up = _upsample(crops[:, None], ch * factor, cw * factor)[:, 0]
    # only the box's own pixels: the rest of the crop was computed against the crop's edge
    y = torch.arange(ch * factor, device=device)[None, :] + (top[group] * factor)[:, None]
    x = torch.arange(cw * factor, device=device)[None, :] + (left[group] * factor)[:, None]
    row_ok = (y >= row_start[group][:, None]) & (y < row_stop[group][:, None])
    col_ok = (x >= col_start[group][:, None]) & (x < col_stop[group][:, None])
    above = (up > level[group][:, None, None]) & row_ok[:, :, None] & col_ok[:, None, :]
    member, yy, xx = above.nonzero(as_tuple=True)
    return group[member], (yy + top[group][member] * factor) * size + xx + left[group][member] * factor
