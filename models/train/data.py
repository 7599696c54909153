"""Rendered world data sets for training, cached on disk as ``.npz`` keyed by split, size and count."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.world import render_scene, world_seed
from models.world.render import WORLD_VERSION

__all__ = ["world_arrays", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$GANPAINT_CACHE_DIR`` or ``~/.cache/ganpaint``."""
    return Path(os.environ.get("GANPAINT_CACHE_DIR", Path.home() / ".cache" / "ganpaint"))


def world_arrays(split: str, count: int, size: int = 64, cache_dir: Path | None = None,
                 progress: bool = True, cancelled: Callable[[], bool] | None = None,
                 world: str = "classic") -> dict[str, np.ndarray]:
    """Images, object / material / colour maps, scene labels of the first ``count`` scenes of a split
    of ``world`` (``classic`` or ``framed``)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    prefix = "" if world == "classic" else f"{world}-"
    path = cache_dir / "world" / f"{prefix}v{WORLD_VERSION}-{split}-{size}px-{count}.npz"
    if path.exists():
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    images = np.empty((count, size, size, 3), np.uint8)
    objects = np.empty((count, size, size), np.uint8)
    materials = np.empty((count, size, size), np.uint8)
    colors = np.empty((count, size, size), np.uint8)
    scenes = np.empty((count,), np.int64)
    for i in tqdm(range(count), desc=f"render {split} {world} world", disable=not progress, unit="img"):
        if cancelled is not None and i % 64 == 0 and cancelled():
            raise InterruptedError("rendering cancelled")
        scene = render_scene(world_seed(split, i), size, world)
        images[i], objects[i], materials[i], colors[i], scenes[i] = (
            scene.image, scene.objects, scene.materials, scene.colors, scene.scene)
    arrays: dict[str, np.ndarray] = {"images": images, "objects": objects, "materials": materials, "colors": colors,
                                     "scenes": scenes}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays
