"""How good an explanation map is: weakly supervised localisation and faithfulness.

- Localisation (Zhou et al. 2016): keep pixels above 20 % of the map's maximum, take the bounding
  box of the largest connected component, count it correct when its IoU with a ground-truth box is
  at least 0.5. *Top-1 localisation* also needs the top-1 class to be right (the map explains the
  predicted class); *GT-known* uses the map of the true class. *MaxBoxAcc* (Choe et al. 2020) is
  the best GT-known accuracy over a sweep of thresholds.
- Faithfulness: deletion / insertion AUC (Petsiuk et al. 2018: remove, or add to a blank image,
  pixels in order of the map, area under the target probability curve) and Average Drop /
  Increase in Confidence (Chattopadhyay et al. 2018: the image multiplied by the map).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

__all__ = ["box_from_map", "box_iou", "localization_hits", "deletion_insertion", "drop_increase", "THRESHOLDS"]

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


def box_from_map(cam_map: np.ndarray, fraction: float = 0.2) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) with exclusive ends around the largest connected region >= fraction * max."""
    peak = float(cam_map.max())
    if peak <= 0:
        return None
    labels, count = ndimage.label(cam_map >= fraction * peak)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def localization_hits(cam_map: np.ndarray, boxes: Sequence[Sequence[int]], fractions: Sequence[float] = (0.2,),
                      min_iou: float = 0.5) -> list[bool]:
    """For each threshold fraction: does the map's box overlap some ground-truth box by >= min_iou?"""
    hits = []
    for fraction in fractions:
        box = box_from_map(cam_map, fraction)
        hits.append(box is not None and any(box_iou(box, gt) >= min_iou for gt in boxes))
    return hits


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                       steps: int = 16, baseline: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image deletion and insertion AUC of the target's softmax probability (trapezoid rule)."""
    n, _, h, w = images.shape
    order = maps.flatten(1).argsort(dim=1, descending=True)  # most important pixels first
    fractions = torch.linspace(0, 1, steps + 1)
    deletion = torch.empty(n, steps + 1)
    insertion = torch.empty(n, steps + 1)
    blank = torch.full_like(images, baseline)
    for s, fraction in enumerate(fractions):
        k = int(round(float(fraction) * h * w))
        chosen = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
        chosen.scatter_(1, order[:, :k], True)
        chosen = chosen.view(n, 1, h, w)
        for probs, picture in ((deletion, torch.where(chosen, blank, images)), (insertion, torch.where(chosen, images, blank))):
            probs[:, s] = torch.softmax(model(picture), 1).gather(1, targets[:, None])[:, 0].cpu()
    x = fractions.numpy()
    return np.trapezoid(deletion.numpy(), x, axis=1), np.trapezoid(insertion.numpy(), x, axis=1)


@torch.no_grad()
def drop_increase(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per image: relative drop max(0, p - p_masked) / p, and whether p_masked > p (image * map)."""
    p = torch.softmax(model(images), 1).gather(1, targets[:, None])[:, 0]
    masked = torch.softmax(model(images * maps[:, None]), 1).gather(1, targets[:, None])[:, 0]
    drop = (p - masked).clamp(min=0) / p.clamp(min=1e-12)
    return drop.cpu().numpy(), (masked > p).cpu().numpy()
