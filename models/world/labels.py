"""The scene world's concept vocabulary, in Broden's categories (object, material, color, scene).

Label numbers are global and stable: 0 is "no label", then objects, materials, colours. The scene
classes are per-image labels numbered separately (0..len(SCENES)-1), as classifier targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Label",
    "OBJECTS",
    "MATERIALS",
    "COLORS",
    "SCENES",
    "LABELS",
    "LABEL_BY_NAME",
    "CATEGORIES",
    "label_id",
    "scene_label_id",
    "COLOR_PROTOTYPES",
    "color_names",
    "BOX_LABELS",
]


@dataclass(frozen=True)
class Label:
    number: int
    name: str
    category: str
    rgb: tuple[int, int, int]  # display colour for segmentation maps


OBJECTS: tuple[str, ...] = (
    "sky", "cloud", "mountain", "water", "grass", "road",
    "building", "dome", "tower", "door", "window", "tree", "lamp",
)
MATERIALS: tuple[str, ...] = ("brick", "stone", "wood", "glass", "metal")
COLORS: tuple[str, ...] = (
    "black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white", "yellow",
)
SCENES: tuple[str, ...] = ("church", "village", "park", "lakeside")
CATEGORIES: tuple[str, ...] = ("object", "material", "color", "scene")
BOX_LABELS: tuple[str, ...] = ("cloud", "building", "dome", "tower", "door", "window", "tree", "lamp")

_DISPLAY = {
    "sky": (120, 170, 230), "cloud": (235, 235, 245), "mountain": (110, 100, 130), "water": (40, 90, 200),
    "grass": (70, 170, 60), "road": (150, 140, 120), "building": (200, 120, 90), "dome": (230, 190, 40),
    "tower": (160, 60, 160), "door": (110, 60, 20), "window": (60, 230, 230), "tree": (20, 100, 30),
    "lamp": (250, 240, 90), "brick": (170, 60, 40), "stone": (140, 140, 140), "wood": (130, 90, 50),
    "glass": (150, 220, 250), "metal": (90, 90, 110),
}

COLOR_PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "blue": (40, 80, 210), "brown": (120, 75, 35), "grey": (128, 128, 128),
    "green": (50, 150, 50), "orange": (235, 135, 30), "pink": (240, 150, 190), "purple": (120, 50, 150),
    "red": (200, 35, 35), "white": (240, 240, 240), "yellow": (235, 215, 40),
}


def _build() -> tuple[Label, ...]:
    labels = [Label(0, "-", "", (0, 0, 0))]
    for category, names in (("object", OBJECTS), ("material", MATERIALS), ("color", COLORS)):
        for name in names:
            rgb = _DISPLAY.get(name) or COLOR_PROTOTYPES[name]
            labels.append(Label(len(labels), name, category, rgb))
    for i, name in enumerate(SCENES):  # per-image labels, Broden-style "-s" names
        labels.append(Label(len(labels), f"{name}-s", "scene", (60 * i, 200 - 40 * i, 120)))
    return tuple(labels)


LABELS: tuple[Label, ...] = _build()
LABEL_BY_NAME: dict[str, Label] = {label.name: label for label in LABELS[1:]}


def scene_label_id(scene: int) -> int:
    """Global label number of scene class ``scene`` (an index into SCENES)."""
    return LABEL_BY_NAME[f"{SCENES[scene]}-s"].number


def label_id(name: str) -> int:
    """Global label number of a concept name."""
    return LABEL_BY_NAME[name].number


_PROTO = np.array(list(COLOR_PROTOTYPES.values()), dtype=np.float32)
_PROTO_IDS = np.array([label_id(n) for n in COLOR_PROTOTYPES], dtype=np.uint8)


def color_names(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel colour-name label numbers for (..., 3) uint8/float RGB: nearest prototype.

    Distances are measured after scaling each pixel and prototype by its brightness-normalised
    chroma plus lightness, a cheap stand-in for a perceptual space.
    """
    pixels = rgb.astype(np.float32)
    flat = pixels.reshape(-1, 3)
    d = (flat * flat).sum(1, keepdims=True) - 2 * flat @ _PROTO.T + (_PROTO * _PROTO).sum(1)[None]
    return _PROTO_IDS[np.argmin(d, axis=1)].reshape(pixels.shape[:-1])
