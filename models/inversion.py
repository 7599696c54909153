"""Pictures into the generator (GANPaint Studio): encode, refine, adapt, composite.

The picture's stand-in for a sample is its edit-layer activation ``r``; painting edits ``r`` exactly as
it edits a sample's. Four steps, each cheap enough for 2 CPU cores at 128 px:

1. ``encode``: the trained ``LayerEncoder`` gives r at once (a preview).
2. ``refine``: a residual on r, optimised so that the rest of the generator redraws the picture:
   L1 on pixels plus L1 on features of one of the project's own networks (the classifier's first
   blocks; VGG is not available offline), plus an L2 on the residual (ganseeing's
   ``optimize_residuals`` with the residual on the edit layer, 100 Adam steps at lr 0.01 as its
   interactive server).
3. ``adapt``: per-layer multiplicative maps (1 + s) on the outputs of the fine layers after the edit
   layer (the even NormConv layers from 4x the edit grid up: layer8/10/12 at 128 px, as the GANPaint
   Studio code's layer8/10/12/14 at 256 px), fitted to the picture with L1 + 0.1 mean(s^2). The maps
   are free parameters (ganseeing's ``BaselineTunedDirectGenerator``), cheaper on CPU than the
   paper's noise-fed U-Net.
4. ``composite``: the picture itself outside the dilated, feathered region the edit changed; the
   adapted generator inside. Pixels outside the band are the upload's own bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.imaging import to_uint8
from models.incremental import full_suffix
from models.proggan import NormConvBlock, ProgressiveGenerator

__all__ = [
    "Adaptation", "adapt_layers", "suffix_with", "encode", "refine", "adapt", "composite", "keep_mask",
    "edit_band", "psnr", "picture_tensor", "FeatureLoss", "Inversion", "invert",
]

Progress = Callable[[int, int, float], None]
"""(step, steps, loss) after each optimisation step; raising stops the optimisation."""


def picture_tensor(pixels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None].float().to(device) / 127.5 - 1


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def adapt_layers(generator: ProgressiveGenerator, layer: str) -> list[str]:
    """The layers after ``layer`` whose outputs adaptation scales: non-upsampling conv blocks at 4x the
    edit layer's grid and finer (the detail layers; the last conv block when none is that fine)."""
    names = generator.layer_names
    grid = generator.layer_shape(layer)[1]
    convs = [n for n in names[names.index(layer) + 1:] if isinstance(generator._modules[n], NormConvBlock)]
    fine = [n for n in convs if generator.layer_shape(n)[1] >= 4 * grid]
    return fine or convs[-1:]  # a small generator: at least its last conv layer


@dataclass
class Adaptation:
    """The fitted maps s per layer ((1, C, H, W) each); the layer's output is multiplied by 1 + s."""

    scales: dict[str, torch.Tensor] = field(default_factory=dict)

    def multipliers(self) -> dict[str, torch.Tensor]:
        return {name: 1 + s for name, s in self.scales.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"scale.{name}": s.detach().cpu().contiguous() for name, s in self.scales.items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu") -> Adaptation:
        return cls({k[len("scale."):]: v.float().to(device) for k, v in state.items() if k.startswith("scale.")})


def suffix_with(generator: ProgressiveGenerator, layer: str, r: torch.Tensor,
                multipliers: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The layers after ``layer`` on ``r``, each output multiplied by its map where ``multipliers`` has one
    (the painter's own suffix, ``incremental.full_suffix``)."""
    return full_suffix(generator, layer, r, multipliers).image


class FeatureLoss(nn.Module):
    """L1 between features of a frozen network's first blocks (the perceptual term of the refinement)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_classifier(cls, classifier: nn.Module, blocks: int = 2) -> FeatureLoss:
        """The first ``blocks`` blocks of a ``SceneClassifier``'s ``features``."""
        return cls(nn.Sequential(*list(classifier.features.children())[:blocks]))  # type: ignore[union-attr]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.features(a), self.features(b))


def encode(encoder: nn.Module, picture: torch.Tensor) -> torch.Tensor:
    """The encoder's edit-layer activations for (N, 3, S, S) pictures in [-1, 1]."""
    with torch.no_grad():
        return encoder(picture).float()


def _run(steps: int, step: Callable[[], float], progress: Progress | None) -> list[float]:
    losses = []
    for i in range(steps):
        losses.append(step())
        if progress is not None:
            progress(i + 1, steps, losses[-1])
    return losses


def refine(generator: ProgressiveGenerator, layer: str, picture: torch.Tensor, start: torch.Tensor,
           steps: int = 100, lr: float = 0.01, feature_loss: FeatureLoss | None = None, feature_weight: float = 1.0,
           residual_weight: float = 10.0, progress: Progress | None = None) -> torch.Tensor:
    """``start`` plus a residual fitted so that the generator's rest redraws ``picture`` (1, 3, S, S).

    The residual's L2 weight is 10 (ganseeing: 1): at 1 the residual takes up the picture's fine
    texture (its rms reaches a quarter of the layer's), and where a brush then writes its units over
    it, the units it leaves alone carry that texture into the object as glowing specks; at 10 the
    reconstruction is about 1.6 dB lower before adaptation and painted objects are clean."""
    residual = torch.zeros_like(start, requires_grad=True)
    optimizer = torch.optim.Adam([residual], lr=lr)

    def step() -> float:
        image = suffix_with(generator, layer, start + residual)
        loss = F.l1_loss(image, picture) + residual_weight * residual.pow(2).mean()
        if feature_loss is not None:
            loss = loss + feature_weight * feature_loss(image, picture)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.item())

    with torch.enable_grad():
        _run(steps, step, progress)
    return (start + residual).detach()


def adapt(generator: ProgressiveGenerator, layer: str, r: torch.Tensor, picture: torch.Tensor, steps: int = 300,
          lr: float = 0.01, reg: float = 0.1, layers: Sequence[str] | None = None, keep: torch.Tensor | None = None,
          start: Adaptation | None = None, progress: Progress | None = None) -> Adaptation:
    """Maps s on ``layers`` (default ``adapt_layers``) fitted so that the generator redraws ``picture``
    from ``r``: L1 on the pixels ``keep`` (1, 1, S, S) weights (all when None) + ``reg`` * mean(s^2)."""
    chosen = list(layers) if layers is not None else adapt_layers(generator, layer)
    with torch.no_grad():  # the maps' shapes: one forward pass
        names = generator.layer_names[generator.layer_names.index(layer) + 1:]
        shapes = {name: out.shape for name, out in zip(names, full_suffix(generator, layer, r).outputs) if name in chosen}
    scales = {name: (start.scales[name].clone() if start is not None and name in start.scales
                     else torch.zeros(shapes[name], device=r.device)).requires_grad_(True) for name in chosen}
    optimizer = torch.optim.Adam(list(scales.values()), lr=lr)
    weight = keep if keep is not None else torch.ones_like(picture[:, :1])

    def step() -> float:
        image = suffix_with(generator, layer, r, {n: 1 + s for n, s in scales.items()})
        match = ((image - picture).abs() * weight).sum() / (weight.sum() * picture.shape[1]).clamp_min(1)
        loss = match + reg * sum(s.pow(2).mean() for s in scales.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.item())

    with torch.enable_grad():
        _run(steps, step, progress)
    return Adaptation({n: s.detach() for n, s in scales.items()})


def _gaussian(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def edit_band(changed: np.ndarray, size: int, dilation: int | None = None, sigma: float | None = None) -> np.ndarray:
    """(size, size) float weights of the generator's pixels: 1 on the edited cells and ``dilation`` px
    around them, fading to exactly 0 within 3 sigma further (ganseeing: 16 px and sigma 4 at 256 px,
    scaled here to the picture's size)."""
    dilation = max(1, round(size / 16)) if dilation is None else dilation
    sigma = size / 64 if sigma is None else sigma
    cells = np.asarray(changed, dtype=bool)
    if not cells.any():
        return np.zeros((size, size))
    scale = size // cells.shape[0]
    mask = np.kron(cells, np.ones((scale, scale), dtype=bool))
    grown = F.max_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], 2 * dilation + 1, 1, dilation)[0, 0]
    out = grown.numpy().astype(np.float64)
    if sigma > 0:
        kernel = _gaussian(sigma)
        radius = len(kernel) // 2
        # blur the dilated mask, then grow the result by the kernel's reach only (zeros stay zeros)
        padded = np.pad(out, radius)
        rows = sum(kernel[i] * padded[i:i + size, :] for i in range(len(kernel)))
        out = sum(kernel[i] * rows[:, i:i + size] for i in range(len(kernel)))
        out = np.maximum(out, grown.numpy())  # the edited cells and their dilation stay fully generated
    return np.clip(out, 0.0, 1.0)


def keep_mask(changed: np.ndarray, size: int, dilation: int | None = None, sigma: float | None = None) -> np.ndarray:
    """1 - ``edit_band``: the weight of the picture's own pixels."""
    return 1.0 - edit_band(changed, size, dilation, sigma)


def composite(picture: np.ndarray, rendered: np.ndarray, changed: np.ndarray, dilation: int | None = None,
              sigma: float | None = None) -> np.ndarray:
    """The picture outside the band of the ``changed`` edit-layer cells, ``rendered`` inside (uint8)."""
    band = edit_band(changed, picture.shape[0], dilation, sigma)[..., None]
    if not band.any():
        return picture.copy()
    mixed = rendered.astype(np.float64) * band + picture.astype(np.float64) * (1 - band)
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    outside = band[..., 0] == 0
    out[outside] = picture[outside]  # byte-equal by construction, not by rounding
    return out


@dataclass
class Inversion:
    """A picture in the generator: the activations of each step, the adaptation, and how close each is."""

    encoded: torch.Tensor
    refined: torch.Tensor
    adaptation: Adaptation
    images: dict[str, np.ndarray]
    """``encoded`` / ``refined`` / ``adapted``: (H, W, 3) uint8 reconstructions."""
    psnr_db: dict[str, float]
    seconds: dict[str, float]

    def report(self) -> dict[str, object]:
        return {"psnr_db": {k: round(v, 2) for k, v in self.psnr_db.items()},
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def invert(generator: ProgressiveGenerator, layer: str, encoder: nn.Module, pixels: np.ndarray,
           refine_steps: int = 100, adapt_steps: int = 300, feature_loss: FeatureLoss | None = None,
           progress: Callable[[str, float], None] | None = None, encoded: torch.Tensor | None = None,
           cancelled: Callable[[], bool] | None = None) -> Inversion:
    """Encode, refine and adapt one (S, S, 3) uint8 picture; ``progress(stage, fraction)`` after each step
    (raise from it to stop); ``cancelled()`` true stops it at the next step. ``encoded`` reuses an
    encoding made earlier (the upload's preview)."""
    if cancelled is not None:
        reported = progress

        def progress(stage: str, fraction: float) -> None:  # every step is a cancellation point
            if cancelled():
                raise InterruptedError("inversion cancelled")
            if reported is not None:
                reported(stage, fraction)
    device = next(generator.parameters()).device
    picture = picture_tensor(pixels, device)
    seconds: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    r0 = encode(encoder, picture) if encoded is None else encoded.to(device)
    seconds["encode"] = time.perf_counter() - start
    total = max(refine_steps + adapt_steps, 1)
    with torch.no_grad():
        images["encoded"] = to_uint8(suffix_with(generator, layer, r0).clamp(-1, 1))[0]
    start = time.perf_counter()
    report = (lambda i, n, loss: progress("refine", i / total)) if progress is not None else None
    r1 = refine(generator, layer, picture, r0, refine_steps, feature_loss=feature_loss, progress=report) \
        if refine_steps > 0 else r0
    seconds["refine"] = time.perf_counter() - start
    with torch.no_grad():
        images["refined"] = to_uint8(suffix_with(generator, layer, r1).clamp(-1, 1))[0]
    start = time.perf_counter()
    report = (lambda i, n, loss: progress("adapt", (refine_steps + i) / total)) if progress is not None else None
    adaptation = adapt(generator, layer, r1, picture, adapt_steps, progress=report) if adapt_steps > 0 else Adaptation()
    seconds["adapt"] = time.perf_counter() - start
    with torch.no_grad():
        images["adapted"] = to_uint8(suffix_with(generator, layer, r1, adaptation.multipliers()).clamp(-1, 1))[0]
    return Inversion(r0, r1, adaptation, images, {k: psnr(pixels, v) for k, v in images.items()}, seconds)
