"""Export scene-world images as a probe set in the Broden format (readable by NetDissect tools).

Layout written under ``out``::

    index.csv        image,split,ih,iw,sh,sw,color,object,material,part,scene,texture
    category.csv     name,first,last,count,frequency
    label.csv        number,name,category,frequency,coverage,syns
    c_<category>.csv code,number,name,frequency,coverage
    images/world/NNNNNN.png                       the image
    images/world/NNNNNN_{object,material,color}.png  labels packed as code = R + 256 * G

Per-pixel label maps are at full image resolution (``sh, sw = ih, iw``). ``frequency`` counts the
images in which a label appears; ``coverage`` is the sum over those images of the fraction of the
image it covers (so coverage / frequency is its mean area where present). Scene is a per-image label.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from models.world.labels import CATEGORIES, LABELS, scene_label_id
from models.world.render import render_scene, world_seed

__all__ = ["export_broden", "encode_label_png"]

INDEX_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "material", "part", "scene", "texture"]
PIXEL_CATEGORIES = ("object", "material", "color")


def encode_label_png(labels: np.ndarray) -> np.ndarray:
    """(H, W) label numbers -> (H, W, 3) uint8 with R = code % 256, G = code // 256, B = 0."""
    codes = labels.astype(np.int64)
    out = np.zeros(labels.shape + (3,), np.uint8)
    out[..., 0] = codes % 256
    out[..., 1] = codes // 256
    return out


def export_broden(out: Path, count: int, size: int = 64, split: str = "probe", val_fraction: float = 0.3,
                  progress: bool = True, cancelled: Callable[[], bool] | None = None, world: str = "classic") -> Path:
    """Render ``count`` scenes of ``split`` of ``world`` and write them as a Broden directory; returns ``out``."""
    if count < 1:
        raise ValueError("count must be at least 1")
    out = Path(out)
    (out / "images" / "world").mkdir(parents=True, exist_ok=True)
    frequency: dict[int, int] = defaultdict(int)
    coverage: dict[int, float] = defaultdict(float)
    category_images: dict[str, int] = defaultdict(int)
    rows = []
    for i in tqdm(range(count), desc="export broden", unit="img", disable=not progress):
        if cancelled is not None and i % 64 == 0 and cancelled():
            raise InterruptedError("export cancelled")
        scene = render_scene(world_seed(split, i), size, world)
        stem = f"world/{i:06d}"
        Image.fromarray(scene.image).save(out / "images" / f"{stem}.png")
        row: dict[str, object] = {c: "" for c in INDEX_COLUMNS}
        row.update(image=f"{stem}.png", split="val" if (i * 7919) % 1000 < val_fraction * 1000 else "train",
                   ih=size, iw=size, sh=size, sw=size)
        for category, labels in (("object", scene.objects), ("material", scene.materials), ("color", scene.colors)):
            numbers, counts = np.unique(labels, return_counts=True)
            present = [(int(n), int(c)) for n, c in zip(numbers, counts) if n > 0]
            if not present:
                continue
            Image.fromarray(encode_label_png(labels)).save(out / "images" / f"{stem}_{category}.png")
            row[category] = f"{stem}_{category}.png"
            category_images[category] += 1
            for number, pixels in present:
                frequency[number] += 1
                coverage[number] += pixels / labels.size
        scene_number = scene_label_id(scene.scene)
        row["scene"] = str(scene_number)
        frequency[scene_number] += 1
        coverage[scene_number] += 1.0
        category_images["scene"] += 1
        rows.append(row)

    with (out / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with (out / "label.csv").open("w", newline="") as handle:
        plain = csv.writer(handle)
        plain.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for label in LABELS[1:]:
            plain.writerow([label.number, label.name, f"{label.category}({frequency[label.number]})",
                             frequency[label.number], f"{coverage[label.number]:.6f}", ""])
    with (out / "category.csv").open("w", newline="") as handle:
        plain = csv.writer(handle)
        plain.writerow(["name", "first", "last", "count", "frequency"])
        for category in CATEGORIES:
            category_numbers = [lab.number for lab in LABELS if lab.category == category]
            plain.writerow([category, min(category_numbers), max(category_numbers), len(category_numbers),
                           category_images[category]])
            with (out / f"c_{category}.csv").open("w", newline="") as chandle:
                cwriter = csv.writer(chandle)
                cwriter.writerow(["code", "number", "name", "frequency", "coverage"])
                for code, number in enumerate(category_numbers, start=1):
                    cwriter.writerow([code, number, LABELS[number].name, frequency[number], f"{coverage[number]:.6f}"])
    return out
