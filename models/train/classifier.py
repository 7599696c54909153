"""Training recipe for the scene classifier (``ganpaint train classifier``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.classifier import SceneClassifier
from models.train.data import world_arrays
from models.train.supervised import augment_images, train_supervised

__all__ = ["ClassifierConfig", "train_classifier"]


@dataclass
class ClassifierConfig:
    width: int = 32
    resolution: int = 64
    world: str = "classic"
    """The scene world trained on: ``classic`` (v1) or ``framed`` (v2)."""
    dataset_size: int = 30000
    steps: int = 3000
    batch_size: int = 32
    lr: float = 0.003
    weight_decay: float = 5e-4
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 25


def train_classifier(config: ClassifierConfig, run_dir: Path, resume: bool = True, device: str = "cpu",
                     progress: bool = True, max_seconds: float | None = None) -> Path:
    data = world_arrays("train", config.dataset_size, config.resolution, progress=progress, world=config.world)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2)
    scenes = torch.from_numpy(data["scenes"])

    def make_batch(_: dict, index: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = images[index].float() / 127.5 - 1
        flip = torch.rand(len(index), generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        shift = torch.randint(-4, 5, (2,), generator=gen).tolist()
        x = torch.roll(F.pad(x, (4, 4, 4, 4), mode="replicate"), shifts=shift, dims=(2, 3))[:, :, 4:-4, 4:-4]
        return augment_images(x, gen), scenes[index].to(device)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.cross_entropy(logits.float(), target)
        return loss, {"accuracy": (logits.argmax(1) == target).float().mean().item()}

    return train_supervised(config=config, run_dir=run_dir, model=SceneClassifier(config.width), data=data,
                            make_batch=make_batch, loss_fn=loss_fn, resume=resume, device=device,
                            progress=progress, max_seconds=max_seconds, desc="train classifier")
