"""Paint edits: strokes -> per-unit alpha/value maps at a generator layer (GAN Dissection's rule).

At the edit layer ``x' = x * (1 - a) + v * a``. A stroke switches its units on (``add``: ``v`` =
the unit's insertion level times a strength factor), off (``remove``: ``v = 0``) or back to the
original activations (``erase``, on every unit) inside its mask, pooled to the layer grid. Strokes
composite in order with the "over" rule, kept here in premultiplied form::

    A <- 1 - (1 - A) (1 - a)        B <- B (1 - a) + v a        x' = x (1 - A) + B

so an erase stroke is simply ``A <- A (1 - m)``, ``B <- B (1 - m)`` on all units, and a later
stroke wins where strokes overlap. Masks of any resolution are max-pooled (hard: any touched
sub-cell switches the cell on) or mean-pooled (soft) to the layer grid.

Strength ``s`` in [0, 1] sets both how many of a brush's ranked units take part,
``max(1, round(s * max_fraction * units))``, and the inserted value, ``level * (0.5 + s)``; the
default 0.5 uses an eighth of the layer's units at their q99 level (removing a world128 brush's
top 64 of 512 units takes away 52 % of tree pixels, its top 41 only 43 %, on samples 50000..50199).

A brush whose table knows the concept's mean feature (``concept_insertion``) adds differently: it
writes that whole feature vector (ACE's insertion vector: the mean layer feature where the concept
covers a cell) on every unit, with opacity ``alpha = 0.5 + s / 2``. Switching on a few top units is
not enough for structured objects: the units that draw the surroundings (sky above a building)
must be turned down too; on world64 layer4 a dome appears on 2 % of building tops with the top
8 % of units at q99, on 67 % with the mean feature (``bench/paint_efficacy.py``).

A brush learned by ``ganpaint brushes`` (``dissect_core.insertion``: per-unit weights and an
insertion vector, ``LayerTable.insertion_vector``) writes its units at that vector; on world128 it
draws domes on 76 % of building tops where the mean feature draws 3 %, and trees on open ground
more than in open sky. Its strength works in two halves, so that the whole slider matters
(``learned_insertion``): up to the default 0.5 the opacity rises from half the learned weights to
the weights; above it (``t = 2 s - 1``) the opacity rises on to 1, the written values grow to
``(1 + t)`` times the vector, and a *halo* of opacity ``HALO * t`` spreads into the cells around the
painted ones, so the object grows. Most of a dome's or a door's weights are near 1, so opacity
alone saturated: 0 -> 0.5 changed the image near the stroke by about 9 grey levels, 0.5 -> 1 by 1
(``bench/strength.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from dissect_core.gandissect import LayerTable

__all__ = ["Stroke", "HALO", "learned_halo", "unit_values", "brush_units", "brush_edit", "BrushEdit", "concept_insertion",
           "learned_insertion", "pool_mask", "edit_maps", "batch_edit_maps", "apply_edit",
           "MAX_UNIT_FRACTION"]

Action = Literal["add", "remove", "erase"]
MAX_UNIT_FRACTION = 0.25


@dataclass(frozen=True)
class Stroke:
    """One stroke at the layer: which units, their target values, the action and the mask."""

    units: tuple[int, ...]
    values: tuple[float, ...]
    action: Action
    mask: torch.Tensor  # (H, W) in [0, 1], any resolution
    soft: bool = False
    alpha: float = 1.0
    """Opacity of an add or remove stroke (multiplies the pooled mask)."""
    weights: tuple[float, ...] = ()
    """Per-unit opacity in [0, 1] (learned insertion); empty means 1 for every unit."""
    halo: float = 0.0
    """Opacity (times ``alpha`` and the weights) of the cells next to the pooled mask's cells: a
    strong learned brush grows its object into its neighbours."""

    def __post_init__(self) -> None:
        if self.action not in ("add", "remove", "erase"):
            raise ValueError(f"unknown action {self.action!r}")
        if self.action == "add" and len(self.values) != len(self.units):
            raise ValueError("an add stroke needs one value per unit")
        if self.mask.dim() != 2:
            raise ValueError(f"mask must be 2-d (H, W), got {tuple(self.mask.shape)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.halo <= 1.0:
            raise ValueError(f"halo must be in [0, 1], got {self.halo}")
        if self.weights and (len(self.weights) != len(self.units) or not all(0.0 <= w <= 1.0 for w in self.weights)):
            raise ValueError("weights need one value in [0, 1] per unit")


def unit_values(units: Sequence[int], levels: Sequence[float] | torch.Tensor | np.ndarray, strength: float) -> tuple[float, ...]:
    """What an add stroke writes on each unit: its insertion level x (0.5 + strength)."""
    scale = 0.5 + strength
    return tuple(float(levels[u]) * scale for u in units)


def brush_units(ranking: Sequence[int], levels: Sequence[float] | torch.Tensor | np.ndarray, strength: float, layer_units: int,
                max_fraction: float = MAX_UNIT_FRACTION) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The first ``k`` units of a ranking and their insertion values for a given strength."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    k = max(1, round(strength * max_fraction * layer_units))
    units = tuple(int(u) for u in ranking[:k])
    return units, unit_values(units, levels, strength)


def concept_insertion(feature: Sequence[float] | torch.Tensor, strength: float) -> tuple[tuple[int, ...],
                                                                                   tuple[float, ...], float]:
    """Units, values and opacity of an add stroke that writes a concept's mean feature."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    values = tuple(float(v) for v in feature)
    return tuple(range(len(values))), values, 0.5 + strength / 2


HALO = 0.12
"""Opacity of the halo around a learned brush's stroke at full strength (``learned_insertion``)."""


def learned_insertion(alpha: Sequence[float] | np.ndarray, value: Sequence[float] | np.ndarray, strength: float,
                      min_weight: float = 0.01) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    """Units, values and per-unit opacities of an add stroke with learned weights (``dissect_core.insertion``):
    the units whose weight is at least ``min_weight``, written at the insertion vector. Up to the default
    strength 0.5 the opacity is ``weight * (0.5 + strength)`` (the learned weights at 0.5); above it,
    with ``t = 2 * strength - 1``, the opacity is ``weight + (1 - weight) * t`` and the values
    ``(1 + t) * vector`` (the halo, ``learned_halo``, is the stroke's)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    alpha = np.asarray(alpha, dtype=np.float64)
    units = tuple(int(u) for u in np.flatnonzero(alpha >= min_weight))
    t = max(0.0, 2 * strength - 1)
    opacity = alpha * (0.5 + strength) if strength <= 0.5 else alpha + (1 - alpha) * t
    return (units, tuple(float(value[u]) * (1 + t) for u in units),
            tuple(float(min(1.0, opacity[u])) for u in units))


def learned_halo(strength: float) -> float:
    """The halo opacity of a learned brush at ``strength``: 0 up to 0.5, ``HALO`` at 1."""
    return HALO * max(0.0, 2 * strength - 1)


class BrushEdit(NamedTuple):
    """What a concept brush writes: units, their values (add only), opacity, per-unit weights."""

    units: tuple[int, ...]
    values: tuple[float, ...]
    alpha: float
    weights: tuple[float, ...]
    halo: float = 0.0

    def stroke(self, action: Action, mask: torch.Tensor, soft: bool = False) -> Stroke:
        return Stroke(self.units, self.values if action == "add" else (), action, mask, soft, self.alpha, self.weights,
                      self.halo if action == "add" else 0.0)


def brush_edit(table: LayerTable, concept: str, action: Action, strength: float) -> BrushEdit:
    """Units, values, opacity and per-unit weights of a concept brush stroke (``KeyError`` for unknown
    concepts).

    ``remove``: the brush's top ranked units, to zero. ``add``, by what the table holds for the
    concept (``LayerTable.insertion``): ``learned`` per-unit weights at the insertion vector,
    else its mean ``feature`` on every unit (``concept_insertion``), else the top ranked ``units``
    at their q99 level.
    """
    if action == "add":
        mode = table.insertion(concept)
        if mode == "learned":
            number = table.label_number(concept)
            assert table.insertion_alpha is not None
            units, values, weights = learned_insertion(table.insertion_alpha[number], table.insertion_vector(concept),  # type: ignore[arg-type]
                                                       strength)
            return BrushEdit(units, values, 1.0, weights, learned_halo(strength))
        if mode == "feature":
            units, values, alpha = concept_insertion(table.concept_feature(concept), strength)  # type: ignore[arg-type]
            return BrushEdit(units, values, alpha, ())
    units, values = brush_units(table.concept_ranking(concept), table.q99, strength, table.units)
    return BrushEdit(units, values if action == "add" else (), 1.0, ())


def pool_mask(mask: torch.Tensor, size: tuple[int, int], soft: bool = False) -> torch.Tensor:
    """(H, W) mask -> (h, w): max-pooled (hard) or mean-pooled (soft), values in [0, 1]."""
    m = mask.float().clamp(0, 1)[None, None]
    pooled = F.adaptive_avg_pool2d(m, size) if soft else F.adaptive_max_pool2d(m, size)
    return pooled[0, 0]


def edit_maps(strokes: Sequence[Stroke], shape: tuple[int, int, int], device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite strokes into ``(A, B)`` of shape (C, h, w): the edited layer is ``x (1 - A) + B``."""
    channels, h, w = shape
    a_acc = torch.zeros(shape, device=device, dtype=dtype)
    b_acc = torch.zeros(shape, device=device, dtype=dtype)
    for stroke in strokes:
        m = pool_mask(stroke.mask.to(device), (h, w), stroke.soft).to(dtype)
        if stroke.halo > 0:  # the cells around the painted ones, at the halo's opacity
            around = F.max_pool2d(m[None, None], 3, 1, 1)[0, 0]
            m = torch.maximum(m, around * stroke.halo)
        if stroke.action == "erase":
            a_acc *= 1 - m
            b_acc *= 1 - m
            continue
        if any(not 0 <= u < channels for u in stroke.units):
            raise ValueError(f"unit out of range for a layer with {channels} units")
        units = torch.tensor(stroke.units, device=device, dtype=torch.long)
        a = (m * stroke.alpha)[None].expand(len(units), h, w)
        if stroke.weights:
            a = a * torch.tensor(stroke.weights, device=device, dtype=dtype)[:, None, None]
        a_acc[units] = 1 - (1 - a_acc[units]) * (1 - a)
        if stroke.action == "add":
            v = torch.tensor(stroke.values, device=device, dtype=dtype)[:, None, None]
            b_acc[units] = b_acc[units] * (1 - a) + v * a
        else:
            b_acc[units] = b_acc[units] * (1 - a)
    return a_acc, b_acc


def batch_edit_maps(recipes: Sequence[Sequence[Stroke]], shape: tuple[int, int, int],
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of shape (N, C, h, w) for N recipes (one forward pass edits all of them)."""
    maps = [edit_maps(strokes, shape, device) for strokes in recipes]
    return torch.stack([m[0] for m in maps]), torch.stack([m[1] for m in maps])


def apply_edit(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x (1 - A) + B`` (broadcast over a batch when A and B are per-sample or shared)."""
    return x * (1 - a.to(x.dtype)) + b.to(x.dtype)
