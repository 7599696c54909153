"""Feature visualisation by activation maximisation (Olah et al. 2017; lucid / lucent's recipe).

An image parameterisation (pixels, a 1/f-scaled Fourier spectrum, decorrelated colour, or the
zoo GAN's latent as a learned prior, as in Nguyen et al. 2016) is optimised with Adam so that an
objective on the model's activations grows, while random transforms (pad, jitter, scale, rotate)
keep the result robust. Objectives are small composable objects (``channel(...) + 0.5 *
diversity(...)``). Seeded and deterministic; hooks are always removed; works on any model whose
input is an image in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dissect_core.nethook import Trace, relus_replaced

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = [
    "Objective", "channel", "neuron", "direction", "diversity", "PixelImage", "FFTImage", "GeneratorPrior",
    "Transforms", "render", "FeatvizResult",
]

# sqrt of the colour correlation of natural images (lucid), normalised by its largest column norm
_COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_CORRELATION = _COLOR_CORRELATION / _COLOR_CORRELATION.norm(dim=0).max()


# --- objectives ----------------------------------------------------------------------------------
@dataclass
class Objective:
    """A scalar to maximise, computed from traced layer outputs; supports ``+``, ``-`` and scaling."""

    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    layers: tuple[str, ...]
    name: str = "objective"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda a: self(a) + other(a), tuple(dict.fromkeys(self.layers + other.layers)),
                         f"{self.name} + {other.name}")

    def __sub__(self, other: Objective) -> Objective:
        return self + (-1.0) * other

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda a: weight * self(a), self.layers, f"{weight} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self


def _select(tensor: torch.Tensor, batch: int | None) -> torch.Tensor:
    return tensor if batch is None else tensor[batch:batch + 1]


def channel(layer: str, unit: int, batch: int | None = None) -> Objective:
    """Mean activation of a channel (over positions; one batch element or all)."""
    return Objective(lambda a: _select(a[layer], batch)[:, unit].mean(), (layer,), f"channel({layer}:{unit})")


def neuron(layer: str, unit: int, x: int | None = None, y: int | None = None, batch: int | None = None) -> Objective:
    """Activation of a channel at one position (the centre by default)."""
    def fn(a: dict[str, torch.Tensor]) -> torch.Tensor:
        t = _select(a[layer], batch)
        cy = t.shape[2] // 2 if y is None else y
        cx = t.shape[3] // 2 if x is None else x
        return t[:, unit, cy, cx].mean()

    return Objective(fn, (layer,), f"neuron({layer}:{unit})")


def direction(layer: str, vector: torch.Tensor, batch: int | None = None) -> Objective:
    """Mean over positions of the dot product of activations with a direction in channel space."""
    def fn(a: dict[str, torch.Tensor]) -> torch.Tensor:
        t = _select(a[layer], batch)
        return (t * vector.to(t)[None, :, None, None]).sum(1).mean()

    return Objective(fn, (layer,), f"direction({layer})")


def diversity(layer: str) -> Objective:
    """Negative mean pairwise cosine similarity of the batch's Gram matrices (lucid's diversity)."""
    def fn(a: dict[str, torch.Tensor]) -> torch.Tensor:
        t = a[layer]
        b, c = t.shape[:2]
        flat = t.reshape(b, c, -1)
        grams = F.normalize((flat @ flat.transpose(1, 2)).reshape(b, -1), dim=1)
        sim = grams @ grams.T
        return -(sim.sum() - sim.diagonal().sum()) / max(b * (b - 1), 1)

    return Objective(fn, (layer,), f"diversity({layer})")


# --- parameterisations --------------------------------------------------------------------------
class PixelImage(nn.Module):
    """Raw pixels (optionally in decorrelated colour space), squashed to [-1, 1] by a sigmoid."""

    def __init__(self, batch: int, size: int, decorrelate: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.decorrelate = decorrelate
        self.pixels = nn.Parameter(torch.randn(batch, 3, size, size, generator=generator) * 0.01)

    def forward(self) -> torch.Tensor:
        x: torch.Tensor = self.pixels
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", _COLOR_CORRELATION.to(x), x)
        return torch.sigmoid(x) * 2 - 1


class FFTImage(nn.Module):
    """A spectrum scaled by 1/f^decay (natural-image statistics), inverse rFFT, decorrelated colour."""

    def __init__(self, batch: int, size: int, decay_power: float = 1.0, decorrelate: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        self.register_buffer("scale", 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay_power)
        self.size = size
        self.decorrelate = decorrelate
        self.spectrum = nn.Parameter(torch.randn(batch, 3, size, size // 2 + 1, 2, generator=generator) * 0.01)

    def forward(self) -> torch.Tensor:
        scale = cast(torch.Tensor, self.scale)
        spectrum = torch.view_as_complex(self.spectrum) * scale
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", _COLOR_CORRELATION.to(x), x)
        return torch.sigmoid(x) * 2 - 1


class GeneratorPrior(nn.Module):
    """Optimise a generator's latent instead of pixels: images stay on the GAN's manifold."""

    def __init__(self, generator: ProgressiveGenerator, batch: int, size: int, torch_generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generator = generator.requires_grad_(False)
        self.size = size
        self.z = nn.Parameter(torch.randn(batch, generator.z_dim, generator=torch_generator))

    def forward(self) -> torch.Tensor:
        image = self.generator(self.z).clamp(-1, 1)
        if image.shape[-1] != self.size:
            image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return image


@dataclass
class Transforms:
    """lucid's standard robustness transforms, scaled to the image size (defaults for 64 px)."""

    pad: int = 6
    jitter: int = 4
    scales: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1)
    angles: Sequence[float] = (-10, -5, 0, 0, 0, 5, 10)
    jitter_after: int = 2

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        size = images.shape[-1]
        x = F.pad(images, [self.pad] * 4, mode="constant", value=0.0)
        x = _jitter(x, self.jitter, gen)
        scale = float(self.scales[int(torch.randint(len(self.scales), (1,), generator=gen))])
        angle = math.radians(float(self.angles[int(torch.randint(len(self.angles), (1,), generator=gen))]))
        theta = torch.tensor([[math.cos(angle) / scale, -math.sin(angle) / scale, 0.0],
                              [math.sin(angle) / scale, math.cos(angle) / scale, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta[None].expand(x.shape[0], -1, -1), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = _jitter(x, self.jitter_after, gen)
        offset = (x.shape[-1] - size) // 2
        return x[..., offset:offset + size, offset:offset + size]


def _jitter(x: torch.Tensor, amount: int, gen: torch.Generator) -> torch.Tensor:
    if amount <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-amount, amount + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@dataclass
class FeatvizResult:
    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    history: list[float] = field(default_factory=list)  # objective value per logged step
    start_value: float = 0.0
    final_value: float = 0.0


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient still flows where the unit is off (lucid's ``redirected_relu_grad``).

    Where an image's whole ReLU gradient is zero (the unit is silent everywhere, so plain gradient
    ascent cannot start), the gradient passes through except where it would push a negative input
    further down; once the unit fires, the ordinary ReLU gradient takes over.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
        # grad is d(loss)/d(out) for a loss being minimised: grad > 0 at x < 0 would push x lower
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
        silent = relu_grad.flatten(1).norm(dim=1) == 0
        return torch.where(silent.view(-1, *[1] * (x.dim() - 1)), redirected, relu_grad)


class RedirectedReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RedirectedReLU.apply(x)


def render(model: nn.Module, objective: Objective, param: nn.Module, steps: int = 256, lr: float = 0.05,
           transforms: Transforms | None = Transforms(), seed: int = 0,
           progress: Callable[[int, int, float], None] | None = None,
           cancelled: Callable[[], bool] | None = None, redirect_relu: bool = True,
           redirect_steps: int = 16) -> FeatvizResult:
    """Maximise ``objective`` over ``param``'s image; returns the images and the objective's course.

    ``start_value`` / ``final_value`` are the objective on the untransformed image before and after.
    ``redirect_relu`` (lucid's default) lets units that are silent on the start image be optimised
    at all: with plain ReLU gradients their image would stay the flat start. As in lucid
    (``relu_gradient_override``), the redirection is for the first ``redirect_steps`` steps only;
    by then the unit fires, and plain gradients (a third cheaper a step) take over.
    """
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    param = param.to(device)
    was_training = model.training
    model.eval()
    optimizer = torch.optim.Adam(param.parameters(), lr=lr)
    history: list[float] = []

    def evaluate() -> float:
        with torch.no_grad(), Trace(model, objective.layers, stop=True) as trace:
            model(param())
        return float(objective(trace.outputs))

    redirected = ExitStack()
    try:
        start = evaluate()
        if redirect_relu and redirect_steps > 0:  # swapped once, put back after the first steps
            redirected.enter_context(relus_replaced(model, RedirectedReLU))
        for step in range(steps):
            if cancelled is not None and cancelled():
                raise InterruptedError("feature visualisation cancelled")
            if step == redirect_steps:
                redirected.close()
            images = param()
            if transforms is not None:
                images = transforms(images, gen)
            with Trace(model, objective.layers, detach=False, stop=True) as trace:
                model(images)
            value = objective(trace.outputs)
            optimizer.zero_grad(set_to_none=True)
            (-value).backward()
            optimizer.step()
            if step % 16 == 0 or step == steps - 1:
                history.append(float(value.detach()))
                if progress is not None:
                    progress(step + 1, steps, history[-1])
        redirected.close()
        with torch.no_grad():
            final_images = param().detach()
        return FeatvizResult(final_images, history, start, evaluate())
    finally:
        redirected.close()  # the ReLUs are back however the run ends (a second close does nothing)
        model.train(was_training)


def to_uint8_grid(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (H, B*W, 3) uint8 strip."""
    pixels = ((images.detach().float().cpu() + 1) / 2 * 255).clamp(0, 255).round().to(torch.uint8)
    return pixels.permute(2, 0, 3, 1).reshape(images.shape[2], -1, 3).numpy()
