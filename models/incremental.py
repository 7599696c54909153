"""Incremental rendering: after a stroke, recompute only the part of each later layer it can reach.

A ProGAN block is per-pixel work (PixelNorm, the equalised-lr scale, LeakyReLU) around one "same"
convolution, sometimes after a nearest 2x upsample. A change confined to a box of the edit layer's
cells therefore changes, in each later layer, only that box grown by the convolution's half-width
(and doubled at each upsample). ``SuffixCache`` keeps every later layer's output for the last edit of
one painter; ``render`` finds the box where the new edit-layer input differs from the cached one,
computes each later layer on its window plus the receptive-field margin it needs (zero padding only
where the window meets the true border, exactly as the full convolution pads), and pastes the window
into the cached activations. The pixels equal a full forward's up to float rounding (tests), and a
2x2-cell stroke on a 256 px model costs about half the full suffix (``bench/serve_latency.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from models.proggan import NormConvBlock, NormUpscaleConvBlock, OutputConvBlock, ProgressiveGenerator

__all__ = ["Box", "Multipliers", "SuffixCache", "full_suffix", "render", "render_batch", "update", "changed_box", "window_fraction", "supports"]

Span = tuple[int, int]
"""Half-open range of rows or columns."""


@dataclass(frozen=True)
class Box:
    rows: Span
    cols: Span

    @property
    def area(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


@dataclass
class SuffixCache:
    """Every block output after ``layer`` (batch of one), for the edit-layer input ``inputs``."""

    layer: str
    inputs: torch.Tensor
    outputs: list[torch.Tensor]

    @property
    def image(self) -> torch.Tensor:
        return self.outputs[-1]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [self.inputs, *self.outputs])


Block = NormConvBlock | NormUpscaleConvBlock | OutputConvBlock
"""The blocks a ProGAN has after its first layers (``supports`` checks that they are all of these)."""


def _blocks(generator: ProgressiveGenerator, layer: str) -> list[Block]:
    names = generator.layer_names
    return [cast(Block, generator._modules[name]) for name in names[names.index(layer) + 1:]]


def _half(conv: nn.Conv2d) -> int:
    """Half-width of a "same" convolution (its padding)."""
    padding = conv.padding
    return int(padding[0]) if isinstance(padding, tuple) else 0


def supports(generator: nn.Module, layer: str) -> bool:
    """Whether every block after ``layer`` is one whose reach this module knows."""
    if not isinstance(generator, ProgressiveGenerator) or layer not in generator.layer_names:
        return False
    for block in _blocks(generator, layer):
        if isinstance(block, OutputConvBlock):
            if block.conv.kernel_size != (1, 1):
                return False
        elif isinstance(block, (NormConvBlock, NormUpscaleConvBlock)):
            k, p = block.conv.kernel_size[0], _half(block.conv)
            if block.conv.kernel_size[0] != block.conv.kernel_size[1] or k != 2 * p + 1 or block.conv.stride != (1, 1):
                return False
        else:
            return False
    return True


Multipliers = Mapping[str, torch.Tensor]
"""Per-layer maps a layer's output is multiplied by (a picture's adaptation, ``models.inversion``)."""


def _multiplier_list(generator: ProgressiveGenerator, layer: str,
                     multipliers: Multipliers | None) -> list[torch.Tensor | None]:
    names = generator.layer_names[generator.layer_names.index(layer) + 1:]
    return [None if multipliers is None else multipliers.get(name) for name in names]


def full_suffix(generator: ProgressiveGenerator, layer: str, inputs: torch.Tensor,
                multipliers: Multipliers | None = None) -> SuffixCache:
    """Run the blocks after ``layer`` on ``inputs`` (N, C, h, w), keeping each block's output (times
    its map in ``multipliers``, when it has one)."""
    outputs = []
    x = inputs
    for block, scale in zip(_blocks(generator, layer), _multiplier_list(generator, layer, multipliers)):
        x = block(x)
        if scale is not None:
            x = x * scale.to(x.dtype)
        outputs.append(x)
    return SuffixCache(layer, inputs, outputs)


def changed_box(old: torch.Tensor, new: torch.Tensor) -> Box | None:
    """Smallest box holding every position (any channel) where ``new`` differs from ``old``."""
    changed = (old != new).flatten(0, -3).any(0)
    if not bool(changed.any()):
        return None
    rows = changed.any(1).nonzero()[:, 0]
    cols = changed.any(0).nonzero()[:, 0]
    return Box((int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1))


def _grow(span: Span, margin: int, size: int) -> Span:
    return max(0, span[0] - margin), min(size, span[1] + margin)


def _reach(block: Block, box: Box, size: int) -> tuple[Box, int]:
    """The box of ``block``'s output a change in ``box`` of its input can reach, and the output size."""
    if isinstance(block, OutputConvBlock):
        return box, size
    half = _half(block.conv)
    if isinstance(block, NormUpscaleConvBlock):
        box, size = Box((2 * box.rows[0], 2 * box.rows[1]), (2 * box.cols[0], 2 * box.cols[1])), 2 * size
    return Box(_grow(box.rows, half, size), _grow(box.cols, half, size)), size


def window_fraction(generator: ProgressiveGenerator, layer: str, box: Box) -> float:
    """Share of the suffix's convolution work a change in ``box`` needs (MACs of the windows / full)."""
    size = generator.layer_shape(layer)[1]
    window = full = 0.0
    for block in _blocks(generator, layer):
        box, size = _reach(block, box, size)
        per_pixel = block.conv.weight.numel()
        window += per_pixel * box.area
        full += per_pixel * size * size
    return window / full


def _window_input(x: torch.Tensor, out: Box, half: int, upscale: bool, norm: nn.Module) -> torch.Tensor:
    """The input window a convolution needs to produce ``out``: cropped, normalised (per pixel, so crop
    and norm commute), upsampled if the block does, zero-padded where it crosses the true border."""
    size = x.shape[-1] * (2 if upscale else 1)
    padding = []
    crops = []
    for span in (out.cols, out.rows):  # F.pad order: last dimension first
        want = (span[0] - half, span[1] + half)
        have = (max(0, want[0]), min(size, want[1]))
        padding += [have[0] - want[0], want[1] - have[1]]
        crops.append(have)
    (c0, c1), (r0, r1) = crops
    if upscale:  # upsampled rows [r0, r1) come from input rows [r0 // 2, (r1 - 1) // 2 + 1)
        a, b = r0 // 2, (r1 - 1) // 2 + 1
        c, d = c0 // 2, (c1 - 1) // 2 + 1
        piece = F.interpolate(norm(x[:, :, a:b, c:d]), scale_factor=2, mode="nearest")
        piece = piece[:, :, r0 - 2 * a: r1 - 2 * a, c0 - 2 * c: c1 - 2 * c]
    else:
        piece = norm(x[:, :, r0:r1, c0:c1])
    return F.pad(piece, padding)


def _block_window(block: Block, x: torch.Tensor, out: Box) -> torch.Tensor:
    """``block``'s output on the window ``out`` (the same numbers the full block computes there)."""
    if isinstance(block, OutputConvBlock):
        return block(x[:, :, out.rows[0]:out.rows[1], out.cols[0]:out.cols[1]])
    piece = _window_input(x, out, _half(block.conv), isinstance(block, NormUpscaleConvBlock), block.norm)
    return block.relu(block.wscale(F.conv2d(piece, block.conv.weight)))


def render(generator: ProgressiveGenerator, cache: SuffixCache, inputs: torch.Tensor,
           max_fraction: float = 1.0, multipliers: Multipliers | None = None) -> tuple[SuffixCache, float]:
    """Image for the new edit-layer ``inputs`` (1, C, h, w), reusing ``cache`` (updated in place when the
    change is recomputed by windows). Returns the cache holding the result (``.image``) and the share of
    the full suffix's work that was done (0 when nothing changed; 1 when it ran in full because the
    change reaches more than ``max_fraction`` of the work)."""
    (result,), (fraction,) = render_batch(generator, cache.layer, inputs, [cache], max_fraction, [multipliers])
    return result, fraction


def render_batch(generator: ProgressiveGenerator, layer: str, inputs: torch.Tensor,
                 caches: Sequence[SuffixCache | None], max_fraction: float = 1.0,
                 multipliers: Sequence[Multipliers | None] | None = None,
                 ) -> tuple[list[SuffixCache], list[float]]:
    """``render`` for a batch of painters: row ``i`` of ``inputs`` (N, C, h, w) reuses ``caches[i]``
    (None: no earlier render). Rows that update by windows do so in place; the others (no cache, or a
    change reaching more than ``max_fraction`` of the work) run the suffix together in one batch (one
    batch per distinct ``multipliers[i]``: an adapted picture's maps), and their caches are views into
    that batch. Returns one cache per row and the share of work each did."""
    maps = list(multipliers) if multipliers is not None else [None] * len(caches)
    results: list[SuffixCache | None] = [None] * len(caches)
    fractions = [1.0] * len(caches)
    full: list[int] = []
    for i, cache in enumerate(caches):
        row = inputs[i:i + 1]
        if cache is None or cache.layer != layer:
            full.append(i)
            continue
        box = changed_box(cache.inputs, row)
        fraction = 0.0 if box is None else window_fraction(generator, layer, box)
        if fraction > max_fraction:
            full.append(i)
            continue
        results[i] = cache if box is None else update(generator, cache, row, box, maps[i])
        fractions[i] = fraction
    groups: dict[int, list[int]] = {}
    for i in full:
        groups.setdefault(id(maps[i]), []).append(i)
    for rows in groups.values():
        batch = full_suffix(generator, layer, inputs[rows], maps[rows[0]])
        for j, i in enumerate(rows):
            results[i] = SuffixCache(layer, inputs[i:i + 1].clone(), [o[j:j + 1] for o in batch.outputs])
    return results, fractions  # type: ignore[return-value]


def update(generator: ProgressiveGenerator, cache: SuffixCache, inputs: torch.Tensor, box: Box,
           multipliers: Multipliers | None = None) -> SuffixCache:
    """Recompute, in place, the windows of every later layer that a change of the edit-layer input
    confined to ``box`` (``changed_box(cache.inputs, inputs)``) reaches; returns ``cache``. The cache
    must have been made with the same ``multipliers``."""
    size = inputs.shape[-1]
    x = inputs
    scales = _multiplier_list(generator, cache.layer, multipliers)
    for i, block in enumerate(_blocks(generator, cache.layer)):
        box, size = _reach(block, box, size)
        window = _block_window(block, x, box)
        if scales[i] is not None:
            window = window * scales[i][:, :, box.rows[0]:box.rows[1], box.cols[0]:box.cols[1]].to(window.dtype)  # type: ignore[index]
        target = cache.outputs[i]
        target[:, :, box.rows[0]:box.rows[1], box.cols[0]:box.cols[1]] = window
        x = target
    cache.inputs = inputs
    return cache
