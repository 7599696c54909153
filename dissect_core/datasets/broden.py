"""Reading a probe set in the Broden format (a real Broden release or the scene world's export).

``BrodenDataset(root)[i]`` gives the image (H, W, 3 uint8) and, per category, a list of label maps
(``(sh, sw)`` int arrays of global label numbers; per-image labels such as scenes become constant
maps), which is what Network Dissection's IoU counting needs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["BrodenDataset", "BrodenLabel", "BrodenError", "decode_label_png"]

Image.MAX_IMAGE_PIXELS = 64_000_000


class BrodenError(ValueError):
    """A directory that is not a readable Broden probe set; the message names the file."""


@dataclass(frozen=True)
class BrodenLabel:
    number: int
    name: str
    category: str  # primary category: where the label is most frequent
    frequency: int


def decode_label_png(path: Path) -> np.ndarray:
    """Label numbers from a Broden label PNG: ``R + 256 * G``."""
    with Image.open(path) as image:
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return rgb[..., 0].astype(np.int64) | (rgb[..., 1].astype(np.int64) << 8)


def _primary_category(spec: str) -> str:
    """``object(12);part(3)`` -> ``object`` (the category with the largest count)."""
    best, best_count = "", -1
    for part in filter(None, spec.split(";")):
        name, _, count = part.partition("(")
        value = int(count.rstrip(")") or 0)
        if value > best_count:
            best, best_count = name, value
    return best


class BrodenDataset:
    """Index of a Broden directory; items are loaded lazily."""

    def __init__(self, root: str | Path, categories: tuple[str, ...] | None = None, split: str | None = None) -> None:
        self.root = Path(root)
        for name in ("index.csv", "label.csv", "category.csv"):
            if not (self.root / name).is_file():
                raise BrodenError(f"{self.root}: missing {name}; not a Broden probe directory")
        try:
            with (self.root / "category.csv").open() as handle:
                all_categories = tuple(row["name"] for row in csv.DictReader(handle))
            with (self.root / "label.csv").open() as handle:
                self.labels = [BrodenLabel(int(r["number"]), r["name"], _primary_category(r["category"]), int(r["frequency"]))
                               for r in csv.DictReader(handle)]
            with (self.root / "index.csv").open() as handle:
                rows = list(csv.DictReader(handle))
        except (KeyError, ValueError) as exc:
            raise BrodenError(f"{self.root}: malformed Broden CSV ({exc})") from exc
        self.categories = tuple(c for c in (categories or all_categories) if c in all_categories)
        self.rows = [r for r in rows if split is None or r.get("split") == split]
        self.label_names = {0: "-"} | {label.number: label.name for label in self.labels}
        self.num_labels = max(self.label_names) + 1

    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, index: int) -> Path:
        return self.root / "images" / self.rows[index]["image"]

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
        return self.image(index), self.label_maps(index)

    def image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 pixels of one image."""
        path = self.image_path(index)
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise BrodenError(f"{path}: cannot read image ({exc})") from exc

    def label_maps(self, index: int) -> dict[str, list[np.ndarray]]:
        """Per category, the (sh, sw) label-number maps of one image (per-image labels filled in)."""
        row = self.rows[index]
        sh, sw = int(row["sh"]), int(row["sw"])
        labels: dict[str, list[np.ndarray]] = {}
        for category in self.categories:
            maps = []
            for entry in filter(None, (row.get(category) or "").split(";")):
                if entry.isdigit():
                    maps.append(np.full((sh, sw), int(entry), dtype=np.int64))
                else:
                    maps.append(decode_label_png(self.root / "images" / entry))
            labels[category] = maps
        return labels
