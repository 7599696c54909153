"""The scene-world classifier: conv blocks -> global average pooling -> linear, so CAM applies.

The last block's output (``features.block4``, 8x8 for 64x64 inputs) is the CAM target layer and
``fc`` holds the class weights that CAM combines it with.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from models.world.labels import SCENES

__all__ = ["SceneClassifier"]


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    layers += [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers)


class SceneClassifier(nn.Module):
    """Four conv blocks (widths w, 2w, 4w, 8w; 2x pooling before blocks 2-4), GAP, linear."""

    target_layer = "features.block4"

    def __init__(self, width: int = 32, num_classes: int = len(SCENES)) -> None:
        super().__init__()
        w = width
        self.width = width
        self.features = nn.Sequential(OrderedDict([
            ("block1", _block(3, w, pool=False)),
            ("block2", _block(w, 2 * w, pool=True)),
            ("block3", _block(2 * w, 4 * w, pool=True)),
            ("block4", _block(4 * w, 8 * w, pool=True)),
        ]))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)
        self.class_names: tuple[str, ...] = SCENES[:num_classes]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for images in [-1, 1]."""
        return self.fc(self.pool(self.features(images)).flatten(1))
