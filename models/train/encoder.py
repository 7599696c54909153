"""Training recipe for a generator's edit-layer encoder (``ganpaint train encoder``).

Generated pairs only (ganseeing's ``train_multilayer_inv``): z ~ N(0, 1), r = G_1..k(z) at the edit
layer, x = G_k+1..(r); the encoder learns x -> r. The loss is the per-cell cosine distance (PixelNorm
in the next layer makes a cell's direction what the picture depends on) plus the mean squared error
relative to the layer's mean square (its magnitude is what the brushes' unit levels are relative
to), optionally plus an image loss through the frozen rest of the generator. Every batch is fresh, so
there is no dataset to render or store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from models.encoder import LayerEncoder
from models.proggan import ProgressiveGenerator
from models.train.supervised import train_supervised

__all__ = ["EncoderConfig", "train_encoder", "encoder_loss", "generated_pairs"]


@dataclass
class EncoderConfig:
    model: str = "world128"
    """Zoo id or weight file of the generator to encode for."""
    layer: str = "layer4"
    width: int = 32
    steps: int = 3000
    batch_size: int = 16
    lr: float = 0.002
    weight_decay: float = 0.0
    image_weight: float = 0.0
    """Weight of MSE(G_k+1..(E(x)), x); 0 trains on the layer alone (cheaper: no backward through G)."""
    noise: float = 0.02
    """Pixel noise added to the generated pictures, so the encoder also reads pictures it did not make."""
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 25


def generated_pairs(generator: ProgressiveGenerator, layer: str, count: int, gen: torch.Generator,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fresh (pictures in [-1, 1], layer activations) pairs from the generator."""
    z = torch.randn(count, generator.z_dim, generator=gen).to(device)
    with torch.no_grad():
        r = generator.forward_to(layer, z)
        x = generator.forward_from(layer, r).clamp(-1, 1)
    return x, r


def encoder_loss(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Cosine distance per cell plus the squared error relative to the target's mean square."""
    predicted, target = predicted.float(), target.float()
    cosine = F.cosine_similarity(predicted, target, dim=1, eps=1e-6).mean()
    relative = (predicted - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-8)
    return (1 - cosine) + relative, {"cosine": cosine.item(), "relative_mse": relative.item()}


def train_encoder(config: EncoderConfig, run_dir: Path, resume: bool = True, device: str = "cpu",
                  progress: bool = True, max_seconds: float | None = None) -> Path:
    from models.checkpoints import load_generator
    from models.zoo import resolve_weights

    generator = load_generator(resolve_weights(config.model), device=device)
    for p in generator.parameters():
        p.requires_grad_(False)
    if config.layer not in generator.layer_names:
        raise ValueError(f"the generator has no layer {config.layer!r}; layers: {', '.join(generator.layer_names)}")
    channels, size, _ = generator.layer_shape(config.layer)
    resolution = generator.layer_shape(generator.layer_names[-1])[1]
    encoder = LayerEncoder(channels, size, resolution, config.width)

    def make_batch(_: dict, index: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, r = generated_pairs(generator, config.layer, len(index), gen, device)
        if config.noise > 0:
            x = x + config.noise * torch.randn(x.shape, generator=gen).to(device)
        return x, r

    def loss_fn(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, parts = encoder_loss(predicted, target)
        if config.image_weight > 0:
            with torch.no_grad():
                x = generator.forward_from(config.layer, target)
            image = F.mse_loss(generator.forward_from(config.layer, predicted.float()), x)
            loss = loss + config.image_weight * image
            parts["image_mse"] = image.item()
        return loss, parts

    # the loop draws sample indices from ``data``; here they only set the batch size: pairs are fresh
    data = {"index": np.arange(1)}
    return train_supervised(config=config, run_dir=run_dir, model=encoder, data=data, make_batch=make_batch,
                            loss_fn=loss_fn, resume=resume, device=device, progress=progress,
                            max_seconds=max_seconds, desc="train encoder")
