"""Learned insertion: which units a brush writes, how strongly, and with what (GAN Dissection's optimised ACE).

Writing a concept's mean feature on *every* unit of a cell pastes the concept whatever the
context. GAN Dissection instead learns a per-unit weight vector ``alpha`` in [0, 1] over the edit
layer: a region is edited as ``x (1 - alpha m) + v alpha m``. Here the insertion vector ``v``
starts at the concept's mean feature (where it covers a cell) and is learned with ``alpha``
(``learn_value``): the mean feature of a dome is the mean over domes *and the sky around them*,
and on world128 it draws a blurred blob (3 % of building tops become dome); the learned vector
draws one (76 %). Both are trained so that

- where the concept *is* drawn, ablating the weighted units removes it and inserting them brings
  it back (``restore`` regions: score after ablation minus score after insertion);
- in regions where it is absent but that look like where it stands in the data, inserting draws
  it (``context`` regions, ``-log(p + 0.01)``: a gradient while the concept is still absent);
- in regions like none it stands in, inserting does *not* draw it (``out of context`` regions,
  ``-log(1 - p + 0.01)``): a door is not drawn in the sky, a tree not in the middle of the sky;

measured by the segmenter's *differentiable* class probability pooled over the region, plus an L2
penalty ``l2 * sum(alpha^2)`` that keeps the set of written units small.

"Where it stands" is a window's context: its own dominant label (what the brush paints over,
other than the concept) and its **support**, the dominant label of the first row below the window
that is not mostly the concept (what the object stands on; 0 at the image's bottom edge). The
prior over (own, support) pairs is counted on the windows where the concept is drawn: trees stand
on grass, domes on buildings (with sky around), doors on roads (with wall around). Samples come
from their own id range, disjoint from dissection and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from dissect_core.efficacy import Window, paint_share
from dissect_core.intervene import Stroke, learned_insertion
from models.samples import z_tensor

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["InsertionConfig", "InsertionResult", "learn_insertion", "WindowContexts", "window_contexts",
           "ContextPrior", "context_regions", "out_of_context_regions", "restore_regions",
           "unit_brush", "BrushScore", "score_brush",
           "GalleryEntry", "best_single_unit", "GallerySet", "smallest_drawing_set", "ScoreFn"]

ScoreFn = Callable[[torch.Tensor, int], torch.Tensor]
"""``score(images in [-1, 1] (N, 3, H, W), label number) -> (N, h, w)`` class probability, differentiable."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InsertionConfig:
    """How the brush is learned. The L2 default (0.0005) is a tenth of gandissect's 0.005, which was
    set for 256-unit layers and on world128's 512 units keeps the weights too small to draw."""

    samples: int = 400
    """Candidate images searched for regions (ids ``first .. first + samples - 1``)."""
    first: int = 20000
    seed: int = 1
    steps: int = 150
    batch_size: int = 8
    """Regions per step and term (restore, context, out of context) is half of it."""
    lr: float = 0.05
    l2: float = 0.0005
    region: int = 2
    """Side of a painted region in layer cells (the painter's default brush covers about 2x2)."""
    context_weight: float = 1.0
    """Weight of the insertion-in-context term against the restore term."""
    context_log: bool = True
    """``-log(p + 0.01)`` for the context term (a gradient while the concept is still absent);
    False: ``-p`` (gandissect's form; on world128 it never leaves zero for domes)."""
    out_of_context_weight: float = 1.0
    """Weight of the term that keeps the concept from being drawn out of context (0: off)."""
    learn_value: bool = True
    """Also learn the insertion vector (from the concept's mean feature); False keeps it fixed."""
    min_support: float = 0.02
    """A support label seen under less than this share of the concept's windows is foreign to it."""


@dataclass
class InsertionResult:
    alpha: np.ndarray  # (units,) in [0, 1]
    value: np.ndarray  # (units,) the insertion vector written (learned, or the one given)
    history: list[dict[str, float]] = field(default_factory=list)
    restore_regions: int = 0
    context_regions: int = 0
    out_of_context_regions: int = 0


def _cell_fractions(labels: torch.Tensor, grid: tuple[int, int], number: int) -> torch.Tensor:
    """(N, H, W) label map -> (N, h, w) share of each layer cell covered by label ``number``."""
    hit = (labels == number).float()[:, None]
    return F.adaptive_avg_pool2d(hit, grid)[:, 0]


@dataclass
class WindowContexts:
    """Per ``region`` x ``region`` window of layer cells (top-left ``(y, x)``), shape (N, h', w')."""

    own: torch.Tensor
    """Dominant label over the window's cells other than the concept and 0 (0 when none)."""
    support: torch.Tensor
    """Dominant label of the first row below the window that is not mostly the concept (0: the bottom edge)."""
    share: torch.Tensor
    """Share of the window covered by the concept."""
    absent: torch.Tensor
    """True where no cell of the window holds any of the concept."""

    def key(self, n_labels: int) -> torch.Tensor:
        return self.own * n_labels + self.support


def window_contexts(labels: torch.Tensor, grid: tuple[int, int], concept: int, n_labels: int,
                    region: int = 2) -> WindowContexts:
    """(N, H, W) label map -> the context of every window of ``region`` x ``region`` layer cells."""
    one_hot = F.one_hot(labels.long(), n_labels).permute(0, 3, 1, 2).float()
    one_hot[:, concept] = 0
    one_hot[:, 0] = 0
    cells = F.adaptive_avg_pool2d(one_hot, grid)  # (N, L, h, w) label shares per cell
    concept_cells = _cell_fractions(labels, grid, concept)[:, None]  # (N, 1, h, w)
    own = F.avg_pool2d(cells, region, stride=1).argmax(1)
    row_labels = F.avg_pool2d(cells, (1, region), stride=1).argmax(1)  # (N, h, w') a window-wide row
    row_concept = F.avg_pool2d(concept_cells, (1, region), stride=1)[:, 0]
    support = torch.zeros_like(own)
    for y in range(own.shape[1]):
        found = torch.zeros_like(own[:, 0], dtype=torch.bool)
        for below in range(y + region, grid[0]):
            take = ~found & (row_concept[:, below] < 0.5)
            support[:, y][take] = row_labels[:, below][take]
            found |= take
    share = F.avg_pool2d(concept_cells, region, stride=1)[:, 0]
    absent = F.max_pool2d(concept_cells, region, stride=1)[:, 0] == 0
    return WindowContexts(own, support, share, absent)


def restore_regions(fractions: torch.Tensor, region: int, min_share: float = 0.25) -> list[tuple[int, int, int]]:
    """Per image, the ``region`` x ``region`` window where the concept covers the most (>= ``min_share``):
    ``(image, y, x)``."""
    windows = F.avg_pool2d(fractions[:, None], region, stride=1)[:, 0]
    out = []
    for i in range(windows.shape[0]):
        flat = int(windows[i].argmax())
        y, x = divmod(flat, windows.shape[-1])
        if float(windows[i, y, x]) >= min_share:
            out.append((i, y, x))
    return out


@dataclass
class ContextPrior:
    """Where a concept stands: shares of (own, support) pairs and of supports over its windows."""

    pair: torch.Tensor  # (n_labels * n_labels,)
    support: torch.Tensor  # (n_labels,)
    windows: int

    @classmethod
    def count(cls, contexts: Sequence[tuple[WindowContexts, Sequence[tuple[int, int, int]]]],
              n_labels: int) -> ContextPrior:
        """From ``(contexts, restore windows)`` batches: the concept's windows' contexts."""
        pair = torch.zeros(n_labels * n_labels)
        support = torch.zeros(n_labels)
        for ctx, windows in contexts:
            for i, y, x in windows:
                pair[int(ctx.own[i, y, x]) * n_labels + int(ctx.support[i, y, x])] += 1
                support[int(ctx.support[i, y, x])] += 1
        total = max(1, len([w for _, ws in contexts for w in ws]))
        return cls(pair / total, support / total, total)


def context_regions(ctx: WindowContexts, prior: ContextPrior, n_labels: int,
                    rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Per image, one window where the concept is absent, drawn with probability proportional to how
    often the concept stands in the window's (own, support) context; ``(image, y, x)``."""
    weights_all = prior.pair[ctx.key(n_labels).cpu()] * ctx.absent.cpu()
    out = []
    for i in range(weights_all.shape[0]):
        weights = weights_all[i].flatten().double().numpy()
        total = weights.sum()
        if total <= 0:
            continue
        flat = int(rng.choice(weights.size, p=weights / total))
        out.append((i, *divmod(flat, ctx.own.shape[-1])))
    return out


def out_of_context_regions(ctx: WindowContexts, prior: ContextPrior, n_labels: int, rng: np.random.Generator,
                           min_support: float = 0.02) -> list[tuple[int, int, int]]:
    """Per image, one window where the concept is absent and foreign: a context it was never seen in,
    standing on a support it (almost) never stands on; ``(image, y, x)``."""
    foreign = (ctx.absent.cpu() & (prior.pair[ctx.key(n_labels).cpu()] == 0)
               & (prior.support[ctx.support.cpu()] < min_support))
    out = []
    for i in range(foreign.shape[0]):
        cells = foreign[i].nonzero()
        if len(cells):
            y, x = cells[int(rng.integers(len(cells)))].tolist()
            out.append((i, y, x))
    return out


def _region_mask(regions: Sequence[tuple[int, int, int]], grid: tuple[int, int], region: int,
                 device: torch.device) -> torch.Tensor:
    mask = torch.zeros(len(regions), 1, *grid, device=device)
    for row, (_, y, x) in enumerate(regions):
        mask[row, 0, y:y + region, x:x + region] = 1
    return mask


def _region_score(score: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean class probability inside each image's region: (N, h, w) scores, (N, 1, gh, gw) cell mask."""
    up = F.interpolate(mask, size=score.shape[-2:], mode="nearest")[:, 0]
    return (score * up).sum((1, 2)) / up.sum((1, 2)).clamp(min=1)


def learn_insertion(generator: ProgressiveGenerator, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
                    score: ScoreFn, concept: int, n_labels: int, value: np.ndarray | torch.Tensor,
                    config: InsertionConfig = InsertionConfig(), init: np.ndarray | None = None,
                    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
                    ) -> InsertionResult:
    """Learn the per-unit insertion weights (and vector) of label ``concept`` at ``layer``.

    ``segment`` maps images to (N, H, W) label numbers of the concept's category (no gradient);
    ``score`` gives its differentiable probability. ``value`` is the starting insertion vector
    (units,), ``init`` the starting weights (default 0.5 on every unit).
    """
    device = next(generator.parameters()).device
    channels, gh, gw = generator.layer_shape(layer)
    grid = (gh, gw)
    rng = np.random.default_rng(config.seed)
    v0 = torch.as_tensor(np.asarray(value), dtype=torch.float32, device=device)

    # candidate regions, found once on unedited samples
    features: list[torch.Tensor] = []
    restore: list[Any] = []
    batches: list[Any] = []
    ids = list(range(config.first, config.first + config.samples))
    with torch.no_grad():
        for start in range(0, len(ids), 32):
            batch = ids[start:start + 32]
            x = generator.forward_to(layer, z_tensor(batch, generator.z_dim, config.seed, device))
            labels = segment(generator.forward_from(layer, x).clamp(-1, 1))
            ctx = window_contexts(labels.cpu(), grid, concept, n_labels, config.region)
            found = restore_regions(_cell_fractions(labels, grid, concept), config.region)
            batches.append((len(features), ctx, found))
            restore += [(len(features) + i, y, xx) for i, y, xx in found]
            features.extend(x.cpu())
            if progress is not None:
                progress("regions", start + len(batch), len(ids))
    prior = ContextPrior.count([(ctx, found) for _, ctx, found in batches], n_labels)
    ctx_regions: list[tuple[int, int, int]] = []
    foreign: list[tuple[int, int, int]] = []
    for base, ctx, _ in batches:
        ctx_regions += [(base + i, y, xx) for i, y, xx in context_regions(ctx, prior, n_labels, rng)]
        if config.out_of_context_weight > 0:
            foreign += [(base + i, y, xx) for i, y, xx in
                        out_of_context_regions(ctx, prior, n_labels, rng, config.min_support)]
    if not restore:
        raise ValueError(f"label {concept} never covers a quarter of a {config.region}x{config.region} window "
                         f"in {config.samples} samples: nothing to learn from")
    stacked = torch.stack(features).to(device)

    if init is None:
        init = np.full(channels, 0.5, np.float32)
    alpha = torch.tensor(np.clip(init, 0, 1), dtype=torch.float32, device=device, requires_grad=True)
    delta = torch.zeros(channels, device=device, requires_grad=config.learn_value)
    optimiser = torch.optim.Adam([alpha, delta] if config.learn_value else [alpha], lr=config.lr)
    history: list[dict[str, float]] = []
    half = max(1, config.batch_size // 2)
    generator.requires_grad_(False)
    terms = (("restore", restore), ("context", ctx_regions), ("out_of_context", foreign))
    for step in range(config.steps):
        if cancelled is not None and cancelled():
            raise InterruptedError("insertion learning cancelled")
        loss = config.l2 * alpha.square().sum()
        parts: dict[str, float] = {}
        a = alpha[None, :, None, None]
        v = (v0 + delta)[None, :, None, None]
        for name, regions in terms:
            if not regions:
                continue
            chosen = [regions[k] for k in rng.choice(len(regions), size=min(half, len(regions)), replace=False)]
            x = stacked[[r[0] for r in chosen]]
            m = _region_mask(chosen, grid, config.region, device)
            ablated = x * (1 - a * m)
            inserted = ablated + v * a * m
            if name == "restore":
                both = score(generator.forward_from(layer, torch.cat([ablated, inserted])).clamp(-1, 1), concept)
                s_abl, s_ins = _region_score(both, torch.cat([m, m])).chunk(2)
                term = (s_abl - s_ins).mean()
            else:
                s_ins = _region_score(score(generator.forward_from(layer, inserted).clamp(-1, 1), concept), m)
                if name == "context":
                    gain = torch.log(s_ins + 0.01) if config.context_log else s_ins
                    term = -config.context_weight * gain.mean()
                else:  # the other side of a cross-entropy: costly as it nears 1, as the context term near 0
                    term = -config.out_of_context_weight * torch.log(1 - s_ins + 0.01).mean()
            parts[name] = float(term.detach())
            loss = loss + term
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            alpha.clamp_(0, 1)
        parts.update(loss=float(loss.detach()), units=float((alpha > 0.05).sum()), l1=float(alpha.detach().sum()))
        history.append(parts)
        if progress is not None:
            progress("learn", step + 1, config.steps)
    return InsertionResult(alpha=alpha.detach().cpu().numpy(), value=(v0 + delta).detach().cpu().numpy(),
                           history=history, restore_regions=len(restore), context_regions=len(ctx_regions),
                           out_of_context_regions=len(foreign))


def unit_brush(ranking: Sequence[int], q99: np.ndarray, value: np.ndarray, k: int | None = None,
               gain: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """gandissect's unit insertion as ``(alpha, value)``: the concept's top ``k`` ranked units
    (default 4 % of the layer, 20 of 512) switched fully on at ``gain`` x their q99 level, every
    other unit left as generated (``value`` elsewhere is kept only so the row is complete). On
    world128 this respects context better than any learned vector for trees (59 % of ground
    windows, 21 % of sky windows), because it leaves the scene's own units to decide."""
    alpha = np.zeros(len(q99), np.float32)
    k = max(1, round(len(q99) / 25)) if k is None else k
    top = np.asarray(list(ranking)[:k], dtype=int)
    alpha[top] = 1.0
    out = np.asarray(value, np.float32).copy()
    out[top] = np.asarray(q99, np.float32)[top] * gain
    return alpha, out


@dataclass
class BrushScore:
    """How a brush draws on held-out samples: mean concept share of painted windows in context and
    out of context (the segmenter's hard labels, the painter's default opacity)."""

    in_context: float
    out_of_context: float
    regions: tuple[int, int]

    @property
    def margin(self) -> float:
        return self.in_context - self.out_of_context


@torch.no_grad()
def score_brush(generator: ProgressiveGenerator, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
                concept: int, n_labels: int, candidates: Sequence[tuple[np.ndarray, np.ndarray]],
                ids: Sequence[int], seed: int = 1, region: int = 2, min_support: float = 0.02,
                rng: np.random.Generator | None = None) -> list[BrushScore]:
    """Score ``(alpha, value)`` brushes on samples ``ids`` (disjoint from what they were learned on):
    one window in context and one out of context per sample, by the contexts' prior on these samples,
    each painted as the painter paints a learned brush at the default strength (``paint_share``)."""
    rng = rng or np.random.default_rng(seed)
    device = next(generator.parameters()).device
    _, gh, gw = generator.layer_shape(layer)
    grid = (gh, gw)
    x = generator.forward_to(layer, z_tensor(list(ids), generator.z_dim, seed, device))
    images = generator.forward_from(layer, x).clamp(-1, 1)
    labels = segment(images)
    ctx = window_contexts(labels.cpu(), grid, concept, n_labels, region)
    prior = ContextPrior.count([(ctx, restore_regions(_cell_fractions(labels, grid, concept), region))], n_labels)
    sets = (context_regions(ctx, prior, n_labels, rng), out_of_context_regions(ctx, prior, n_labels, rng, min_support))
    windows = [[Window(i, y, xx, "", region) for i, y, xx in regions] for regions in sets]
    scores = []
    for alpha, value in candidates:
        units, values, weights = learned_insertion(alpha, value, 0.5)  # the painter's default strength
        stroke_for = lambda mask: Stroke(units, values, "add", mask, weights=weights)
        shares = []
        for chosen in windows:
            results = [r for start in range(0, len(chosen), 32)
                       for r in paint_share(generator, layer, x, images, chosen[start:start + 32], stroke_for,
                                            segment, concept)]
            shares.append(float(np.mean([r.share for r in results])) if results else 0.0)
        scores.append(BrushScore(shares[0], shares[1], (len(sets[0]), len(sets[1]))))
    return scores


@dataclass
class GalleryEntry:
    """One concept's strongest single drawing unit: "unit N draws trees"."""

    unit: int
    share: float
    """Mean share of a painted 2x2-cell region that becomes the concept when only this unit is set."""
    sample: int
    """A held-out sample where it draws the concept well (for the before / after pictures)."""
    cell: tuple[int, int]
    """Top-left layer cell of the 2x2 region painted in that sample."""


@torch.no_grad()
def best_single_unit(generator: ProgressiveGenerator, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
                     concept: int, candidates: Sequence[int], levels: np.ndarray, ids: Sequence[int],
                     seed: int = 1, gain: float = 1.5, region: int = 2,
                     rng: np.random.Generator | None = None) -> GalleryEntry | None:
    """Among ``candidates``, the unit whose insertion *alone* (set to ``gain`` x its q99 level in a
    ``region`` x ``region`` window where the concept is absent, one window per sample) raises the
    concept's share of the window most: GAN Dissection's "units emerge as drawing objects". The
    default gain is what the painter writes for an explicit unit at full strength (1.5 x q99)."""
    rng = rng or np.random.default_rng(0)
    device = next(generator.parameters()).device
    _, gh, gw = generator.layer_shape(layer)
    x = generator.forward_to(layer, z_tensor(list(ids), generator.z_dim, seed, device))
    labels = segment(generator.forward_from(layer, x).clamp(-1, 1))
    absent = F.max_pool2d(_cell_fractions(labels, (gh, gw), concept)[:, None], region, stride=1)[:, 0] == 0
    windows = []
    for i in range(len(ids)):
        free = absent[i].nonzero()
        if len(free):
            y, xx = free[rng.integers(len(free))].tolist()
            windows.append((i, y, xx))
    if not windows:
        return None
    rows = torch.tensor([w[0] for w in windows], device=device)
    mask = _region_mask(windows, (gh, gw), region, device)
    inside = mask[:, 0] > 0
    up = None
    best: GalleryEntry | None = None
    for unit in candidates:
        edited = x[rows].clone()
        channel = edited[:, unit]
        channel[inside] = float(levels[unit]) * gain
        out = segment(generator.forward_from(layer, edited).clamp(-1, 1))
        if up is None:  # the painted windows at the label maps' size (the same for every unit)
            up = F.interpolate(mask, size=out.shape[-2:], mode="nearest")[:, 0] > 0
        shares = torch.stack([(out[k][up[k]] == concept).float().mean() for k in range(len(windows))])
        mean = float(shares.mean())
        if best is None or mean > best.share:
            k = int(shares.argmax())
            best = GalleryEntry(int(unit), mean, int(ids[windows[k][0]]), (windows[k][1], windows[k][2]))
    return best


@dataclass(frozen=True)
class GallerySet:
    """The smallest set of a brush's units that draws its concept where it stands (GAN Dissection's
    "a few units draw trees"): what the unit browser shows when no unit draws it alone."""

    units: list[int]
    share: float
    """Mean share of the painted in-context windows that becomes the concept with these units on."""
    brush_share: float | None
    """The same with the whole learned brush (``None`` without one): what the set is measured against."""
    sample: int
    """A held-out sample where the set draws the concept well (for the before / after pictures)."""
    cell: tuple[int, int]
    tried: dict[int, float]
    """Share per set size tried, in order: how drawing grows with the number of units."""


@torch.no_grad()
def smallest_drawing_set(generator: ProgressiveGenerator, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
                         concept: int, n_labels: int, ranked: Sequence[int], levels: np.ndarray, ids: Sequence[int],
                         brush: tuple[np.ndarray, np.ndarray] | None = None, sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                         min_share: float = 0.1, of_brush: float = 0.5, seed: int = 1, gain: float = 1.5,
                         region: int = 2, rng: np.random.Generator | None = None) -> GallerySet | None:
    """The first ``k`` of ``ranked`` units (``k`` in ``sizes``), switched on at ``gain`` x q99 as the
    painter writes explicit units at full strength, whose insertion turns at least ``min_share`` of
    a ``region`` x ``region`` window into the concept, and at least ``of_brush`` of what the whole
    ``brush`` (alpha, value) draws there. Windows: one per sample where the concept is absent, drawn
    from the contexts it stands in within these samples (``context_regions``), so a dome set is
    tried above roofs, not in open sky. ``None`` when no size qualifies or the concept is too rare
    in ``ids`` to find its contexts."""
    rng = rng or np.random.default_rng(0)
    device = next(generator.parameters()).device
    _, gh, gw = generator.layer_shape(layer)
    x = generator.forward_to(layer, z_tensor(list(ids), generator.z_dim, seed, device))
    labels = segment(generator.forward_from(layer, x).clamp(-1, 1))
    ctx = window_contexts(labels, (gh, gw), concept, n_labels, region)
    prior = ContextPrior.count([(ctx, restore_regions(_cell_fractions(labels, (gh, gw), concept), region))], n_labels)
    windows = context_regions(ctx, prior, n_labels, rng)
    if not windows:
        return None
    rows = torch.tensor([w[0] for w in windows], device=device)
    mask = _region_mask(windows, (gh, gw), region, device)
    inside = mask[:, 0] > 0

    def shares(edited: torch.Tensor) -> torch.Tensor:
        out = segment(generator.forward_from(layer, edited).clamp(-1, 1))
        up = F.interpolate(mask, size=out.shape[-2:], mode="nearest")[:, 0] > 0
        return torch.stack([(out[k][up[k]] == concept).float().mean() for k in range(len(windows))])

    brush_share = None
    if brush is not None:
        alpha = torch.as_tensor(brush[0], dtype=x.dtype, device=device)[None, :, None, None] * mask
        value = torch.as_tensor(brush[1], dtype=x.dtype, device=device)[None, :, None, None]
        brush_share = float(shares(x[rows] * (1 - alpha) + value * alpha).mean())
    needed = max(min_share, of_brush * brush_share) if brush_share is not None else min_share
    tried: dict[int, float] = {}
    for k in [k for k in sizes if k <= len(ranked)]:
        units = list(ranked[:k])
        edited = x[rows].clone()
        for unit in units:
            channel = edited[:, unit]
            channel[inside] = float(levels[unit]) * gain
        per_window = shares(edited)
        tried[k] = round(float(per_window.mean()), 4)
        if tried[k] >= needed:
            best = int(per_window.argmax())
            return GallerySet([int(u) for u in units], tried[k], brush_share, int(ids[windows[best][0]]),
                              (windows[best][1], windows[best][2]), tried)
    return None
