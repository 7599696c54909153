"""The scene-world segmenter: a small U-Net that labels objects and materials per pixel.

It plays the role of gandissect's Unified Perceptual Parsing network: dissection labels generated
images with it and painting measures edits with it. Colour names are not learned: they are a
fixed function of the pixels (nearest colour prototype), computed here in torch so that the whole
labelling runs on the model's device.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.world.labels import COLOR_PROTOTYPES, MATERIALS, OBJECTS, label_id

__all__ = ["WorldSegmenter", "SEGMENTER_CATEGORIES", "class_label_numbers", "color_label_map", "label_maps"]

SEGMENTER_CATEGORIES = ("object", "material", "color")


def class_label_numbers(category: str) -> torch.Tensor:
    """Global label number of each output class of a head (index 0 = no label)."""
    names = {"object": OBJECTS, "material": MATERIALS}[category]
    return torch.tensor([0] + [label_id(n) for n in names], dtype=torch.long)


_COLOR_PROTOS = torch.tensor(list(COLOR_PROTOTYPES.values()), dtype=torch.float32)
_COLOR_IDS = torch.tensor([label_id(n) for n in COLOR_PROTOTYPES], dtype=torch.long)


def color_label_map(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] -> (N, H, W) colour-name label numbers (as the world computes them)."""
    pixels = torch.round(torch.clamp((images.float() + 1) / 2 * 255, 0, 255))
    protos = _COLOR_PROTOS.to(images.device)
    flat = pixels.permute(0, 2, 3, 1).reshape(-1, 3)
    dist = (flat * flat).sum(1, keepdim=True) - 2 * flat @ protos.T + (protos * protos).sum(1)[None]
    return _COLOR_IDS.to(images.device)[dist.argmin(1)].reshape(images.shape[0], *images.shape[2:])


def label_maps(logits: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Object and material head logits of ``images`` (in [-1, 1]) -> (N, 3, H, W) global label
    numbers: object, material and the computed colour name."""
    out = [class_label_numbers(c).to(images.device)[logits[c].argmax(1)] for c in ("object", "material")]
    out.append(color_label_map(images))
    return torch.stack(out, 1)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class WorldSegmenter(nn.Module):
    """U-Net (widths ``w, 2w, 4w, 4w``) with one head per learned category."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.width = width
        self.enc1, self.enc2, self.enc3, self.bottom = _double_conv(3, w), _double_conv(w, 2 * w), _double_conv(2 * w, 4 * w), _double_conv(4 * w, 4 * w)
        self.dec3, self.dec2, self.dec1 = _double_conv(8 * w, 2 * w), _double_conv(4 * w, w), _double_conv(2 * w, w)
        self.object_head = nn.Conv2d(w, len(OBJECTS) + 1, 1)
        self.material_head = nn.Conv2d(w, len(MATERIALS) + 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per category for images in [-1, 1] (side divisible by 8)."""
        e1 = self.enc1(images)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.bottom(F.max_pool2d(e3, 2))
        up = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        d3 = self.dec3(torch.cat([up(b), e3], 1))
        d2 = self.dec2(torch.cat([up(d3), e2], 1))
        d1 = self.dec1(torch.cat([up(d2), e1], 1))
        return {"object": self.object_head(d1), "material": self.material_head(d1)}

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) global label numbers: object, material, colour."""
        return label_maps(self(images), images)
