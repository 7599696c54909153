"""Learned insertion: which units a brush writes, and how strongly (GAN Dissection's optimised ACE).

Writing a concept's mean feature on *every* unit of a cell pastes the concept whatever the
context. GAN Dissection instead learns a per-unit weight vector ``alpha`` in [0, 1] over the edit
layer: a region is edited as ``x (1 - alpha m) + v alpha m`` with ``v`` the concept's insertion
vector (its mean feature where it covers a cell), and ``alpha`` is trained so that

- where the concept *is* drawn, ablating the weighted units removes it and inserting them brings
  it back (``restore`` regions: score after ablation minus score after insertion), and
- in regions where it is absent but whose surroundings are where the concept is seen in the data
  (``context`` regions: a door on a wall, a dome on a roof), inserting draws it (minus its mean
  probability there),

measured by the segmenter's *differentiable* class probability pooled over the region, plus an L2
penalty ``l2 * sum(alpha^2)`` that keeps the set of written units small. The units left at zero
keep the scene's own activations, so the generator still decides how (and whether) the concept
fits there. Samples come from their own id range, disjoint from dissection and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from models.samples import z_tensor

__all__ = ["InsertionConfig", "InsertionResult", "learn_insertion", "context_regions", "restore_regions",
           "GalleryEntry", "best_single_unit",
           "ScoreFn", "iou_init"]

ScoreFn = Callable[[torch.Tensor, int], torch.Tensor]
"""``score(images in [-1, 1] (N, 3, H, W), label number) -> (N, h, w)`` class probability, differentiable."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InsertionConfig:
    """How the weights are learned (defaults: gandissect's L2 0.005, Adam on [0, 1]-clamped weights)."""

    samples: int = 400
    """Candidate images searched for regions (ids ``first .. first + samples - 1``)."""
    first: int = 20000
    seed: int = 1
    steps: int = 150
    batch_size: int = 8
    lr: float = 0.05
    l2: float = 0.005
    region: int = 2
    """Side of a painted region in layer cells (the painter's default brush covers about 2x2)."""
    context_weight: float = 1.0
    """Weight of the insertion-in-context term against the restore term."""
    context_log: bool = False
    """Use ``-log(p + 0.01)`` instead of ``-p`` for the context term: a gradient while the concept is
    still absent, but it pulls towards writing every unit (a paste)."""


@dataclass
class InsertionResult:
    alpha: np.ndarray  # (units,) in [0, 1]
    history: list[dict[str, float]] = field(default_factory=list)
    restore_regions: int = 0
    context_regions: int = 0


def _cell_fractions(labels: torch.Tensor, grid: tuple[int, int], number: int) -> torch.Tensor:
    """(N, H, W) label map -> (N, h, w) share of each layer cell covered by label ``number``."""
    hit = (labels == number).float()[:, None]
    return F.adaptive_avg_pool2d(hit, grid)[:, 0]


def _dominant_context(labels: torch.Tensor, grid: tuple[int, int], concept: int, n_labels: int) -> torch.Tensor:
    """(N, H, W) -> (N, h, w) the most common label other than ``concept`` in each cell's 3x3
    neighbourhood of cells: what a concept at that cell stands in."""
    one_hot = F.one_hot(labels.long(), n_labels).permute(0, 3, 1, 2).float()
    one_hot[:, concept] = 0
    one_hot[:, 0] = 0
    cells = F.adaptive_avg_pool2d(one_hot, grid)
    around = F.avg_pool2d(cells, 3, stride=1, padding=1, count_include_pad=False)
    return around.argmax(1)


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


def context_regions(fractions: torch.Tensor, context: torch.Tensor, prior: torch.Tensor, region: int,
                    rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Per image, one window where the concept is absent, drawn with probability proportional to how
    often the concept is seen in the window's dominant context (``prior[label]``); ``(image, y, x)``."""
    absent = F.max_pool2d(fractions[:, None], region, stride=1)[:, 0] == 0
    n, hh, ww = absent.shape
    out = []
    for i in range(n):
        ctx = context[i, :hh, :ww]  # context of the window's top-left cell
        weights = (prior[ctx] * absent[i]).flatten().double().cpu().numpy()
        total = weights.sum()
        if total <= 0:
            continue
        flat = int(rng.choice(weights.size, p=weights / total))
        out.append((i, *divmod(flat, ww)))
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


def learn_insertion(generator: torch.nn.Module, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
                    score: ScoreFn, concept: int, n_labels: int, value: np.ndarray | torch.Tensor,
                    config: InsertionConfig = InsertionConfig(), init: np.ndarray | None = None,
                    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
                    ) -> InsertionResult:
    """Learn the per-unit insertion weights of label ``concept`` at ``layer``.

    ``segment`` maps images to (N, H, W) label numbers of the concept's category (no gradient);
    ``score`` gives its differentiable probability. ``value`` is the insertion vector (units,).
    """
    device = next(generator.parameters()).device
    channels, gh, gw = generator.layer_shape(layer)
    grid = (gh, gw)
    rng = np.random.default_rng(config.seed)
    v = torch.as_tensor(np.asarray(value), dtype=torch.float32, device=device)[None, :, None, None]

    # candidate regions, found once on unedited samples
    features, restore, ctx_regions, contexts = [], [], [], []
    ids = list(range(config.first, config.first + config.samples))
    prior_counts = torch.zeros(n_labels, device=device)
    with torch.no_grad():
        for start in range(0, len(ids), 32):
            batch = ids[start:start + 32]
            x = generator.forward_to(layer, z_tensor(batch, generator.z_dim, config.seed, device))
            labels = segment(generator.forward_from(layer, x).clamp(-1, 1))
            frac = _cell_fractions(labels, grid, concept)
            ctx = _dominant_context(labels, grid, concept, n_labels)
            present = frac >= 0.5
            prior_counts += torch.bincount(ctx[present], minlength=n_labels).float()
            base = len(features)
            features.extend(x.cpu())
            contexts.append((base, frac.cpu(), ctx.cpu()))
            restore += [(base + i, y, xx) for i, y, xx in restore_regions(frac, config.region)]
            if progress is not None:
                progress("regions", start + len(batch), len(ids))
    prior = prior_counts.cpu() / prior_counts.sum().clamp(min=1)
    for base, frac, ctx in contexts:
        ctx_regions += [(base + i, y, xx) for i, y, xx in context_regions(frac, ctx, prior, config.region, rng)]
    if not restore and not ctx_regions:
        raise ValueError(f"label {concept} never appears in {config.samples} samples: nothing to learn from")
    stacked = torch.stack(features).to(device)

    if init is None:
        init = np.full(channels, 0.1, np.float32)
    alpha = torch.tensor(np.clip(init, 0, 1), dtype=torch.float32, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([alpha], lr=config.lr)
    history: list[dict[str, float]] = []
    half = max(1, config.batch_size // 2)
    generator.requires_grad_(False)
    for step in range(config.steps):
        if cancelled is not None and cancelled():
            raise InterruptedError("insertion learning cancelled")
        loss = config.l2 * alpha.square().sum()
        parts: dict[str, float] = {}
        a = alpha[None, :, None, None]
        for name, regions in (("restore", restore), ("context", ctx_regions)):
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
                gain = torch.log(s_ins + 0.01) if config.context_log else s_ins
                term = -config.context_weight * gain.mean()
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
    return InsertionResult(alpha=alpha.detach().cpu().numpy(), history=history,
                           restore_regions=len(restore), context_regions=len(ctx_regions))


def iou_init(iou_column: np.ndarray, scale: float = 0.5) -> np.ndarray:
    """gandissect's start: the concept's IoU ranking normalised to [0, ``scale``]."""
    top = float(iou_column.max())
    return (iou_column / top * scale).astype(np.float32) if top > 0 else np.zeros_like(iou_column, np.float32)


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
def best_single_unit(generator: torch.nn.Module, layer: str, segment: Callable[[torch.Tensor], torch.Tensor],
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
