"""The procedural scene world: deterministic scenes with exact per-pixel concept labels."""

from models.world.labels import CATEGORIES, COLORS, LABELS, MATERIALS, OBJECTS, SCENES, label_id
from models.world.render import Scene, render_batch, render_scene, world_seed

__all__ = [
    "CATEGORIES", "COLORS", "LABELS", "MATERIALS", "OBJECTS", "SCENES", "label_id",
    "Scene", "render_batch", "render_scene", "world_seed",
]
