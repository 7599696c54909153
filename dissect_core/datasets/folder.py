"""A folder of images (PNG/JPEG), centre-cropped and resized to a square side, in sorted order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ImageFolder"]

SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolder:
    def __init__(self, root: str | Path, size: int = 64, limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a directory")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in SUFFIXES)[:limit]
        if not self.paths:
            raise ValueError(f"{self.root}: no PNG or JPEG images")
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        with Image.open(self.paths[index]) as opened:
            image = opened.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((self.size, self.size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
