"""The independent judge: a second scene-world segmenter, of another architecture and other data.

Brushes are learned against the zoo segmenter (a U-Net at 64 px), and dissection labels images
with it; a brush can then learn that segmenter's blind spots instead of drawing the object. This
net only judges. It shares nothing with the U-Net but the label vocabulary: it reads the
generator's full 128 px, works at 1/4 scale with dilated residual blocks and a pooled image-level
context branch (DeepLab v3+ in miniature) instead of an encoder-decoder with skips at every
scale, and it is trained on the world's ``judge`` split, whose seeds no other model saw.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.segmenter import label_maps
from models.world.labels import MATERIALS, OBJECTS

__all__ = ["JudgeSegmenter"]


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _DilatedResidual(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(channels, channels, dilation=dilation)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
                                   nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class JudgeSegmenter(nn.Module):
    """Stride-4 dilated residual net + image pooling context + one 1/2-scale refinement."""

    def __init__(self, width: int = 48, input_size: int = 128) -> None:
        super().__init__()
        w = width
        self.width = width
        self.input_size = input_size
        """The image size it was trained at (the adapter resizes other sizes to it)."""
        self.stem1 = _conv_bn(3, w // 2, stride=2)        # 1/2
        self.stem2 = _conv_bn(w // 2, w, stride=2)        # 1/4
        self.body = nn.Sequential(*[_DilatedResidual(w, d) for d in (1, 2, 4, 8)])
        self.context = nn.Sequential(nn.Conv2d(w, w, 1, bias=False), nn.ReLU(inplace=True))
        self.fuse = _conv_bn(2 * w, w)
        self.refine = _conv_bn(w + w // 2, w // 2)
        self.object_head = nn.Conv2d(w // 2, len(OBJECTS) + 1, 1)
        self.material_head = nn.Conv2d(w // 2, len(MATERIALS) + 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per category at the input size, for images in [-1, 1] (side divisible by 4)."""
        s1 = self.stem1(images)
        x = self.body(self.stem2(s1))
        pooled = self.context(x.mean(dim=(2, 3), keepdim=True)).expand_as(x)
        x = self.fuse(torch.cat([x, pooled], 1))
        x = F.interpolate(x, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.refine(torch.cat([x, s1], 1))
        up = lambda t: F.interpolate(t, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"object": up(self.object_head(x)), "material": up(self.material_head(x))}

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) global label numbers: object, material, colour."""
        return label_maps(self(images), images)
