"""Per-unit thresholds by the information quality ratio (gandissect's ``iqr`` mode for GANs).

A fixed top-1 % mask bounds a unit's IoU with a concept that covers a share ``s`` of the pixels by
about ``0.01 / s``: sky or grass covering 25 % of a scene can never pass IoU 0.04. gandissect
therefore lets each unit choose its own threshold: among candidate levels at the top ``f`` of its
activations (``f = logspace(-3, 0, 100)``, top 0.1 % ... all pixels), it takes the (level, label)
pair whose 2 x 2 joint of (activation > level, label present) has the highest

    IQR = mutual information / joint entropy,

counting only pairs whose masks agree on more than 80 % of pixels, whose level is positive, and
whose label covers at least 0.1 % of the pixels. IoU against every label is then measured at the
chosen level (category-aware denominators, as everywhere else). A unit with no eligible pair keeps
its top-1 % candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FRACTIONS", "IQRChoice", "candidate_levels", "choose_levels", "information_quality_ratio"]

FRACTIONS = np.logspace(-3, 0, 100)
"""Candidate top fractions (0.1 % ... 100 %); 1 % is among them (the fallback)."""
FALLBACK_INDEX = len(FRACTIONS) - 1 - int(np.argmin(np.abs(FRACTIONS - 0.01)))
"""Index of the top-1 % level among the ascending candidate levels."""


def candidate_levels(values: torch.Tensor, fractions: Sequence[float] | np.ndarray = FRACTIONS) -> torch.Tensor:
    """(units, K) ascending levels with a share ``f`` of each unit's ``values`` (units, M) above.

    The level for ``f`` is the ``(ceil(f M) + 1)``-th largest value (the smallest value for f = 1);
    column ``K - 1 - i`` belongs to ``fractions[i]`` (larger fractions, lower levels).
    """
    ordered = values.float().sort(dim=1).values
    m = ordered.shape[1]
    index = [min(max(m - math.ceil(f * m) - 1, 0), m - 1) for f in fractions]
    return ordered[:, index[::-1]]


def information_quality_ratio(intersection: torch.Tensor, unit_area: torch.Tensor, label_area: torch.Tensor,
                              pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IQR and agreement of (unit mask, label mask) from counts; shapes broadcast to (..., labels).

    ``intersection`` (units, K, labels), ``unit_area`` (units, K), ``label_area`` (labels,).
    """
    n = float(pixels)
    p11 = intersection.double() / n
    pa = unit_area.double()[..., None] / n
    pl = label_area.double()[None, None, :] / n
    p10, p01 = pa - p11, pl - p11
    p00 = 1 - p11 - p10 - p01
    cells = [(p11, pa, pl), (p10, pa, 1 - pl), (p01, 1 - pa, pl), (p00, 1 - pa, 1 - pl)]

    def plogp(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # p * log(p / q), 0 where p == 0
        return torch.where(p > 0, p * torch.log(p.clamp(min=1e-300) / q.clamp(min=1e-300)), torch.zeros_like(p))

    mutual = torch.zeros_like(cells[0][0])  # 0 + x is x: the same sums as Python's sum()
    joint = torch.zeros_like(cells[0][0])
    for p, a, b in cells:
        mutual = mutual + plogp(p, a * b)
        joint = joint - plogp(p, torch.ones_like(p))
    iqr = torch.where(joint > 0, mutual / joint.clamp(min=1e-300), torch.zeros_like(joint))
    return iqr, p11 + p00


@dataclass
class IQRChoice:
    """Each unit's chosen candidate, its IQR and label, and IoU with every label at that level."""

    index: torch.Tensor  # (units,) candidate index
    level: torch.Tensor  # (units,)
    iqr: torch.Tensor  # (units,)
    label: torch.Tensor  # (units,) label maximizing IQR (0 when none was eligible)
    iou: torch.Tensor  # (units, labels)


def choose_levels(counts: dict[str, torch.Tensor], levels: torch.Tensor, category_of: Sequence[int],
                  min_agreement: float = 0.8, min_label_share: float = 0.001) -> IQRChoice:
    """Pick every unit's level from ``LevelTally.at_levels()`` counts and the tally's (ascending)
    candidate ``levels``."""
    intersection, unit_area, label_area = counts["intersection"], counts["unit_area"], counts["label_area"]
    pixels = int(counts["pixels"])
    category = torch.as_tensor(list(category_of), dtype=torch.long, device=intersection.device)
    iqr, agreement = information_quality_ratio(intersection, unit_area, label_area, pixels)
    eligible = (agreement > min_agreement) & (levels.to(iqr.device)[..., None] > 0)
    eligible &= ((label_area.double() >= min_label_share * pixels) & (category >= 0))[None, None, :]
    eligible[..., 0] = False
    iqr = torch.where(eligible, iqr, torch.zeros_like(iqr))
    units, k, labels = iqr.shape
    best = iqr.reshape(units, k * labels).max(1)
    index = torch.where(best.values > 0, best.indices // labels, torch.full_like(best.indices, FALLBACK_INDEX))
    label = torch.where(best.values > 0, best.indices % labels, torch.zeros_like(best.indices))
    rows = torch.arange(units, device=iqr.device)
    chosen_intersection = intersection[rows, index].double()  # (units, labels)
    chosen_category_area = counts["category_area"][rows, index].double()  # (units, categories)
    union = chosen_category_area[:, category.clamp(min=0)] + label_area[None, :].double() - chosen_intersection
    iou = torch.where(union > 0, chosen_intersection / union.clamp(min=1), torch.zeros_like(union))
    iou[:, category < 0] = 0
    iou[:, 0] = 0
    return IQRChoice(index=index, level=levels[rows.to(levels.device), index.to(levels.device)],
                     iqr=best.values.float(), label=label, iou=iou.float())
