"""Top-activating images per unit for any model and layer over an image set, as masked strips.

Each unit's images are ranked by the spatial maximum of its activation; the mask on each image is
the unit's activation (bilinearly upsampled) above its level: the top ``quantile`` of its
activations over the whole set, as in Network Dissection (0.5 % by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from dissect_core.nethook import Trace
from dissect_core.stats import TopImages, TopValues, quantile_rank

__all__ = ["TopK", "top_activating", "write_strips"]

class ImageSource(Protocol):
    """Random access (H, W, 3) uint8 images: a list, an ``ImageFolder``, a probe set's images."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass
class TopK:
    layer: str
    level: np.ndarray  # (units,)
    indices: np.ndarray  # (units, k)
    scores: np.ndarray  # (units, k)


def _batch(source: ImageSource, indices: Sequence[int], device: torch.device) -> torch.Tensor:
    pixels = np.stack([source[i] for i in indices])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1


@torch.no_grad()
def top_activating(model: torch.nn.Module, layer: str, source: ImageSource, k: int = 12, quantile: float = 0.005,
                   batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> TopK:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    count = len(source)
    tops: TopValues | None = None
    images: TopImages | None = None
    try:
        for start in range(0, count, batch_size):
            if cancelled is not None and cancelled():
                raise InterruptedError("top-k cancelled")
            indices = list(range(start, min(start + batch_size, count)))
            with Trace(model, layer, stop=True) as trace:
                model(_batch(source, indices, device))
            acts = trace[layer].float()
            if tops is None or images is None:
                units, h, w = acts.shape[1:]
                tops = TopValues(units, quantile_rank(count * h * w, 1 - quantile), device)
                images = TopImages(units, k, device)
            tops.add(acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1]))
            images.add(acts.flatten(2).amax(2), torch.tensor(indices, device=device))
            if progress is not None:
                progress(indices[-1] + 1, count)
    finally:
        model.train(was_training)
    assert tops is not None and images is not None
    return TopK(layer, tops.quantile(1 - quantile).cpu().numpy(), images.indices.cpu().numpy(), images.scores.cpu().numpy())


@torch.no_grad()
def write_strips(model: torch.nn.Module, result: TopK, source: ImageSource, out_dir: Path,
                 units: Sequence[int] | None = None, count: int = 8) -> list[Path]:
    """``unit<NNNN>.png`` strips: each top image dimmed outside the unit's above-level region."""
    device = next(model.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    units = list(range(result.indices.shape[0])) if units is None else list(units)
    written = []
    for unit in units:
        indices = [int(i) for i in result.indices[unit][:count]]
        with Trace(model, result.layer, stop=True) as trace:
            model(_batch(source, indices, device))
        acts = trace[result.layer][:, unit:unit + 1].float()
        size = source[indices[0]].shape[0]
        masks = (F.interpolate(acts, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
                 > float(result.level[unit])).cpu().numpy()
        tiles = [(source[i].astype(np.float32) * (0.2 + 0.8 * m[..., None])).round().astype(np.uint8)
                 for i, m in zip(indices, masks)]
        path = out_dir / f"unit{unit:04d}.png"
        Image.fromarray(np.concatenate(tiles, axis=1)).save(path)
        written.append(path)
    return written
