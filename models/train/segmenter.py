"""Training recipe for the world segmenter (``ganpaint train segmenter``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.segmenter import WorldSegmenter, class_label_numbers
from models.train.data import world_arrays
from models.train.supervised import augment_images, train_supervised

__all__ = ["SegmenterConfig", "train_segmenter", "to_class_index", "segmenter_model"]


@dataclass
class SegmenterConfig:
    width: int = 32
    resolution: int = 64
    world: str = "classic"
    """The scene world trained on: ``classic`` (v1) or ``framed`` (v2)."""
    architecture: str = "unet"
    """``unet`` (``models.segmenter.WorldSegmenter``, the zoo segmenter) or ``judge``
    (``models.judge.JudgeSegmenter``, the independent judge: train it on the ``judge`` split)."""
    split: str = "train"
    """The world split rendered for training (``judge``: seeds no other model sees)."""
    dataset_size: int = 30000
    steps: int = 4000
    batch_size: int = 32
    lr: float = 0.003
    weight_decay: float = 1e-4
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 25


def to_class_index(label_map: np.ndarray | torch.Tensor, category: str) -> torch.Tensor:
    """Global label numbers -> head class indices (0 = no label)."""
    numbers = class_label_numbers(category)
    lookup = torch.zeros(256, dtype=torch.long)
    lookup[numbers] = torch.arange(len(numbers))
    return lookup[torch.as_tensor(np.asarray(label_map), dtype=torch.long)]


def _class_weights(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """1/sqrt(frequency) weights, normalised to mean 1: thin objects (lamps, doors) count more."""
    freq = torch.bincount(labels.flatten(), minlength=classes).float() + 1.0
    weights = freq.rsqrt()
    return weights / weights.mean()


def segmenter_model(config: SegmenterConfig) -> torch.nn.Module:
    """The untrained network a config names."""
    if config.architecture == "judge":
        from models.judge import JudgeSegmenter

        return JudgeSegmenter(config.width, config.resolution)
    return WorldSegmenter(config.width)


def train_segmenter(config: SegmenterConfig, run_dir: Path, resume: bool = True, device: str = "cpu",
                    progress: bool = True, max_seconds: float | None = None) -> Path:
    if config.architecture not in ("unet", "judge"):
        raise ValueError(f"architecture {config.architecture!r}: use unet or judge")
    data = world_arrays(config.split, config.dataset_size, config.resolution, progress=progress, world=config.world)
    objects = to_class_index(data["objects"], "object")
    materials = to_class_index(data["materials"], "material")
    w_obj = _class_weights(objects[:2000], int(objects.max().item()) + 1).to(device)
    w_mat = _class_weights(materials[:2000], int(materials.max().item()) + 1).to(device)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2)

    def make_batch(_: dict, index: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, tuple]:
        x = images[index].float() / 127.5 - 1
        obj, mat = objects[index], materials[index]
        flip = torch.rand(len(index), generator=gen) < 0.5
        x[flip], obj[flip], mat[flip] = x[flip].flip(-1), obj[flip].flip(-1), mat[flip].flip(-1)
        return augment_images(x, gen), (obj.to(device), mat.to(device))

    def loss_fn(outputs: dict[str, torch.Tensor], targets: tuple) -> tuple[torch.Tensor, dict[str, float]]:
        obj, mat = targets
        l_obj = F.cross_entropy(outputs["object"].float(), obj, weight=w_obj)
        l_mat = F.cross_entropy(outputs["material"].float(), mat, weight=w_mat)
        return l_obj + l_mat, {"loss_object": l_obj.item(), "loss_material": l_mat.item()}

    return train_supervised(config=config, run_dir=run_dir, model=segmenter_model(config), data=data,
                            make_batch=make_batch, loss_fn=loss_fn, resume=resume, device=device,
                            progress=progress, max_seconds=max_seconds, desc="train segmenter")
