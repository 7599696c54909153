"""A seeded, deterministic renderer of small outdoor scenes with exact labels.

Each scene is painted back to front on a float canvas with analytic, anti-aliased coverage (exact
pixel-area coverage for axis-aligned boxes, a clamped signed distance for curved and slanted
edges). Every paint call also writes the label maps where the shape covers at least half a pixel,
so the labels are exactly what is visible after occlusion: an object map, a material map and an
instance map (for bounding boxes). Colour-name labels are computed from the final pixels.

Geometry is drawn in units of the image size, so any resolution renders the same scene.
The scene class is decided first and fixes which objects appear:

- church:   a church (building with a dome and/or a tower), maybe a house, trees, lamps;
- village:  two to four houses (never a dome or tower), road, maybe trees and lamps;
- park:     no buildings, two or more trees, at least one lamp, a path;
- lakeside: water and mountains, no buildings and no lamps, maybe trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.world.drawing import (
    BRICK_COLORS,
    DOME_COLORS,
    ROOF_COLORS,
    STONE_COLORS,
    Canvas,
    L,
    draw_lamp,
    draw_tree,
    jitter,
    paint_clouds,
    paint_grass,
    paint_mountains,
    paint_sky,
    paint_water,
    wall_texture,
)
from models.world.framed import render_framed_once
from models.world.labels import BOX_LABELS, SCENES, color_names, label_id

__all__ = ["Scene", "render_scene", "render_batch", "world_seed", "SPLIT_OFFSETS", "WORLD_VERSION", "WORLDS"]

WORLD_VERSION = 2
"""Bumped whenever a change to the renderer changes any image or label (invalidates caches)."""

SPLIT_OFFSETS = {"train": 0, "heldout": 1_000_000_000, "probe": 2_000_000_000, "judge": 3_000_000_000}


def world_seed(split: str, index: int) -> int:
    """Seed of image ``index`` of a split; the splits never share seeds."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLIT_OFFSETS)}")
    if not 0 <= index < 1_000_000_000:
        raise ValueError(f"index {index} out of range")
    return SPLIT_OFFSETS[split] + index


@dataclass
class Scene:
    """One rendered scene: pixels and exact labels."""

    image: np.ndarray  # (H, W, 3) uint8
    objects: np.ndarray  # (H, W) uint8 global label numbers of OBJECTS, 0 = none
    materials: np.ndarray  # (H, W) uint8 global label numbers of MATERIALS, 0 = none
    colors: np.ndarray  # (H, W) uint8 global label numbers of COLORS
    scene: int  # index into SCENES
    boxes: list[tuple[int, int, int, int, int, bool]] = field(default_factory=list)
    """(label number, x0, y0, x1, y1, is_key) with exclusive x1/y1; key boxes locate the scene class."""

    @property
    def scene_name(self) -> str:
        return SCENES[self.scene]


def _draw_building(canvas: Canvas, rng: np.random.Generator, cx: float, base_y: float, width: float,
                   height: float, church: bool, group: int, light: float) -> tuple[float, float, float, float]:
    """A wall with roof, door and windows; for a church also a dome and/or tower. Returns its box."""
    material = "brick" if rng.random() < 0.5 else "stone"
    base = jitter(rng, BRICK_COLORS[rng.integers(4)] if material == "brick" else STONE_COLORS[rng.integers(4)], 0.05)
    x0, x1 = cx - width / 2, cx + width / 2
    y0, y1 = base_y - height, base_y
    top = y0
    left, right = x0, x1
    building = canvas.new_instance(L["building"], group)
    mat_id = L[material]

    tower_side = 0
    has_dome = has_tower = False
    if church:
        kind = rng.integers(3)  # 0 dome, 1 tower, 2 both
        has_dome, has_tower = kind in (0, 2), kind in (1, 2)
        tower_side = -1 if rng.random() < 0.5 else 1
    if has_tower:
        tw = width * rng.uniform(0.22, 0.32)
        th = height * rng.uniform(1.2, 1.9)
        tx = (x0 + tw / 2 - tw * 0.15) if tower_side < 0 else (x1 - tw / 2 + tw * 0.15)
        tower = canvas.new_instance(L["tower"], group)
        win = canvas.window(tx - tw / 2, base_y - th - tw * 1.2, tx + tw / 2, base_y)
        if win:
            tcolor = wall_texture(canvas, win, material, base * 0.92, tx - tw / 2, base_y - th, rng)
            cov = canvas.box_cov(win, tx - tw / 2, base_y - th, tx + tw / 2, base_y)
            canvas.paint(win, cov, tcolor * light, L["tower"], mat_id, tower)
            spire_color = jitter(rng, ROOF_COLORS[rng.integers(4)], 0.04) * light
            spire_h = tw * rng.uniform(0.9, 1.6)
            cov = canvas.polygon_cov(win, [(tx - tw / 2 - 0.005, base_y - th), (tx, base_y - th - spire_h),
                                           (tx + tw / 2 + 0.005, base_y - th)])
            canvas.paint(win, cov, spire_color, L["tower"], 0, tower)
            top = min(top, base_y - th - spire_h)
            left, right = min(left, tx - tw / 2), max(right, tx + tw / 2)

    win = canvas.window(x0, y0 - height, x1, y1)
    if win is None:
        return (x0, y0, x1, y1)
    wall = wall_texture(canvas, win, material, base, x0, y0, rng)
    xs = canvas.centers[win[1]]
    sun = 0.88 + 0.2 * (xs - x0) / max(width, 1e-3)
    canvas.paint(win, canvas.box_cov(win, x0, y0, x1, y1), wall * sun[None, :, None] * light, L["building"], mat_id, building)

    roof_color = jitter(rng, ROOF_COLORS[rng.integers(4)], 0.05) * light
    if has_dome:
        dome_r = width * rng.uniform(0.28, 0.42)
        dome_h = dome_r * rng.uniform(0.8, 1.25)
        dcx = cx + (width * 0.15 * -tower_side if has_tower else 0.0)
        dome = canvas.new_instance(L["dome"], group)
        dwin = canvas.window(dcx - dome_r, y0 - dome_h - dome_r * 0.5, dcx + dome_r, y0 + 0.01)
        if dwin:
            dcol = jitter(rng, DOME_COLORS[rng.integers(4)], 0.05)
            dys = canvas.centers[dwin[0]]
            shade = (0.75 + 0.4 * np.clip((y0 - dys) / dome_h, 0, 1))[:, None, None]
            cov = canvas.ellipse_cov(dwin, dcx, y0, dome_r, dome_h)
            cov *= canvas.box_cov(dwin, 0, 0, 1, y0)
            canvas.paint(dwin, cov, dcol[None, None] * shade * light, L["dome"], L["metal"], dome)
            # small lantern / cross on top
            lw = dome_r * 0.12
            cov = canvas.box_cov(dwin, dcx - lw, y0 - dome_h - dome_r * 0.35, dcx + lw, y0 - dome_h + 0.004)
            canvas.paint(dwin, cov, dcol * 0.8 * light, L["dome"], L["metal"], dome)
            top = min(top, y0 - dome_h - dome_r * 0.35)
    else:
        roof_h = height * rng.uniform(0.35, 0.7)
        overhang = width * 0.06
        rwin = canvas.window(x0 - overhang, y0 - roof_h, x1 + overhang, y0 + 0.01)
        if rwin:
            cov = canvas.polygon_cov(rwin, [(x0 - overhang, y0 + 0.002), (cx, y0 - roof_h), (x1 + overhang, y0 + 0.002)])
            canvas.paint(rwin, cov, roof_color, L["building"], 0, building)
            top = min(top, y0 - roof_h)

    # door
    dw = width * rng.uniform(0.14, 0.22) * (1.3 if church else 1.0)
    dh = height * rng.uniform(0.38, 0.55)
    dx = cx + (0 if church else rng.uniform(-0.25, 0.25) * width)
    door = canvas.new_instance(L["door"], group)
    dwin = canvas.window(dx - dw / 2, y1 - dh - dw / 2, dx + dw / 2, y1)
    if dwin:
        dcol = jitter(rng, (0.35, 0.2, 0.1), 0.06) * light
        cov = canvas.box_cov(dwin, dx - dw / 2, y1 - dh, dx + dw / 2, y1)
        if church:  # arched top
            cov = np.maximum(cov, canvas.ellipse_cov(dwin, dx, y1 - dh, dw / 2, dw / 2) * canvas.box_cov(dwin, 0, 0, 1, y1 - dh))
        canvas.paint(dwin, cov, dcol, L["door"], L["wood"], door)
    # windows: one row, avoiding the door
    n_win = int(rng.integers(2, 5)) if width > 0.2 else int(rng.integers(1, 3))
    ww = min(width / (n_win * 2.2), height * 0.3)
    wh = ww * rng.uniform(1.0, 1.6)
    wy = y0 + height * rng.uniform(0.15, 0.3)
    lit = rng.random() < 0.3
    wcol = np.array((0.95, 0.85, 0.4) if lit else (0.2, 0.28, 0.45), np.float32) + rng.uniform(-0.05, 0.05)
    for k in range(n_win):
        wx = x0 + width * (k + 0.5) / n_win
        if abs(wx - dx) < (dw + ww) / 2 + 0.01 and wy + wh > y1 - dh:
            continue
        window = canvas.new_instance(L["window"], group)
        wwin = canvas.window(wx - ww / 2, wy, wx + ww / 2, wy + wh)
        if wwin:
            cov = canvas.box_cov(wwin, wx - ww / 2, wy, wx + ww / 2, wy + wh)
            canvas.paint(wwin, cov, np.clip(wcol * (light if not lit else 1.0), 0, 1), L["window"], L["glass"], window)
    return (left, top, right, y1)


MAX_ATTEMPTS = 16

# Visible pixels (as a fraction of the image) that a scene's defining objects must keep after
# occlusion, so that every scene can be told apart by what it shows.
_MIN_VISIBLE = {"park": (("lamp",), ("tree",)), "church": (("dome", "tower"),), "village": (("building",),),
                "lakeside": (("water",), ("mountain",))}


def _defining_objects_visible(canvas: Canvas, name: str) -> bool:
    threshold = 0.002 * canvas.size**2
    return all(np.isin(canvas.obj, [L[n] for n in group]).sum() >= threshold for group in _MIN_VISIBLE[name])


def render_scene(seed: int, size: int = 64, world: str = "classic") -> Scene:
    """Render the scene of ``seed`` at ``size`` x ``size`` pixels (deterministic) in ``world``.

    Worlds (``WORLDS``): ``classic`` (world v1: small buildings in a wide landscape, the world64
    model's data) and ``framed`` (world v2: one large building framed like LSUN church_outdoor).
    The rare layout whose defining objects end up hidden (a lamp behind trees) is redrawn from a
    seed derived from ``(seed, attempt)``.
    """
    if not 8 <= size <= 1024:
        raise ValueError(f"size must be between 8 and 1024, got {size}")
    layout = _layout(world)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng(seed if attempt == 0 else [seed, attempt])
        canvas, name, scene, key_groups = layout(rng, size)
        if _defining_objects_visible(canvas, name):
            break
    image = np.clip(canvas.rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    boxes = _boxes(canvas, key_groups, name)
    return Scene(image=image, objects=canvas.obj, materials=canvas.mat, colors=color_names(image),
                 scene=scene, boxes=boxes)


WORLDS: tuple[str, ...] = ("classic", "framed")
"""The scene worlds: ``classic`` is world v1, ``framed`` world v2."""


def _layout(world: str):
    if world == "classic":
        return _render_once
    if world == "framed":
        return render_framed_once
    raise ValueError(f"unknown world {world!r}; worlds are {', '.join(WORLDS)}")


def _render_once(rng: np.random.Generator, size: int) -> tuple[Canvas, str, int, set[int]]:
    scene = int(rng.integers(len(SCENES)))
    name = SCENES[scene]
    canvas = Canvas(size)
    mood = rng.choice(3, p=(0.6, 0.25, 0.15))  # day, dusk, overcast
    night = mood == 1 and rng.random() < 0.3
    light = float(rng.uniform(0.85, 1.05) * (0.8 if night else 1.0))
    horizon = float(rng.uniform(0.42, 0.58))

    hor_c = paint_sky(canvas, rng, horizon, mood, light)
    paint_clouds(canvas, rng, horizon, mood, light)
    has_mountain = name == "lakeside" or rng.random() < 0.25
    if has_mountain:
        paint_mountains(canvas, rng, horizon, light)
    paint_grass(canvas, rng, horizon, light)

    # water
    if name == "lakeside" or (name == "park" and rng.random() < 0.2):
        wy1 = paint_water(canvas, rng, horizon, hor_c, light, lake=name == "lakeside")
    else:
        wy1 = horizon

    # road / path
    if name in ("village", "church") or name == "park" or rng.random() < 0.2:
        vx = float(rng.uniform(0.3, 0.7))
        bottom_w = float(rng.uniform(0.2, 0.45)) if name != "park" else float(rng.uniform(0.12, 0.3))
        bx = float(rng.uniform(0.25, 0.75))
        y_start = max(horizon, wy1) + (0.0 if name != "park" else rng.uniform(0.02, 0.1))
        top_w = 0.02 if name != "park" else 0.04
        rwin = canvas.window(0, y_start, 1, 1)
        if rwin:
            road_c = jitter(rng, (0.5, 0.48, 0.45) if name != "park" else (0.7, 0.62, 0.45), 0.05)
            cov = canvas.polygon_cov(rwin, [(vx - top_w, y_start), (vx + top_w, y_start),
                                            (bx + bottom_w / 2, 1.02), (bx - bottom_w / 2, 1.02)])
            canvas.paint(rwin, cov, road_c * light, L["road"])

    # things standing on the ground, drawn far to near
    things: list[tuple[float, str, dict]] = []
    ground0 = max(horizon, wy1) + 0.03
    if name == "church":
        width = float(rng.uniform(0.4, 0.58))
        things.append((float(rng.uniform(ground0 + 0.1, 0.85)), "church", {"cx": float(rng.uniform(0.3, 0.7)), "width": width}))
        if rng.random() < 0.35:
            things.append((float(rng.uniform(ground0, 0.75)), "house", {"cx": float(rng.choice([rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.95)]))}))
    elif name == "village":
        n = int(rng.integers(2, 5))
        slots = np.sort(rng.permutation(np.linspace(0.12, 0.88, 5))[:n])
        for cx in slots:
            things.append((float(rng.uniform(ground0 + 0.02, 0.85)), "house", {"cx": float(cx + rng.uniform(-0.04, 0.04))}))
    n_trees = {"church": rng.integers(0, 3), "village": rng.integers(0, 3), "park": rng.integers(2, 6), "lakeside": rng.integers(0, 4)}[name]
    for _ in range(int(n_trees)):
        things.append((float(rng.uniform(ground0, 0.98)), "tree", {"cx": float(rng.uniform(0.02, 0.98))}))
    n_lamps = {"church": int(rng.random() < 0.3), "village": int(rng.integers(0, 3)), "park": int(rng.integers(1, 4)), "lakeside": 0}[name]
    for _ in range(n_lamps):
        things.append((float(rng.uniform(ground0 + 0.05, 0.98)), "lamp", {"cx": float(rng.uniform(0.05, 0.95))}))
    things.sort(key=lambda item: item[0])

    key_groups: set[int] = set()
    for index, (base_y, kind, params) in enumerate(things, start=1):
        perspective = 0.6 + 0.8 * (base_y - horizon) / (1 - horizon)
        if kind == "church":
            _draw_building(canvas, rng, params["cx"], base_y, params["width"] * perspective,
                           params["width"] * rng.uniform(0.5, 0.75) * perspective, True, index, light)
            key_groups.add(index)
        elif kind == "house":
            w = float(rng.uniform(0.2, 0.3)) * perspective
            _draw_building(canvas, rng, params["cx"], base_y, w, w * rng.uniform(0.6, 0.9), False, index, light)
            if name == "village":
                key_groups.add(index)
        elif kind == "tree":
            draw_tree(canvas, rng, params["cx"], base_y, float(rng.uniform(0.2, 0.38)) * perspective, index, light,
                       autumn=rng.random() < 0.15)
            if name == "park":
                key_groups.add(index)
        else:
            draw_lamp(canvas, rng, params["cx"], base_y, float(rng.uniform(0.2, 0.3)) * perspective, index, light, night)
            if name == "park":
                key_groups.add(index)

    return canvas, name, scene, key_groups


_BOX_IDS = {label_id(n) for n in BOX_LABELS}


def _boxes(canvas: Canvas, key_groups: set[int], scene_name: str) -> list[tuple[int, int, int, int, int, bool]]:
    """Visible-pixel boxes per object instance, plus one key box per scene-defining group."""
    boxes: list[tuple[int, int, int, int, int, bool]] = []
    group_extent: dict[int, list[int]] = {}
    inst = canvas.inst
    present = np.unique(inst)
    for k in present[present > 0]:
        label, group = canvas.instances[k]
        if label not in _BOX_IDS:
            continue
        ys, xs = np.nonzero(inst == k)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        boxes.append((label, *box, False))
        if group in key_groups:
            ext = group_extent.setdefault(group, box[:])
            ext[:] = [min(ext[0], box[0]), min(ext[1], box[1]), max(ext[2], box[2]), max(ext[3], box[3])]
    if scene_name == "lakeside":
        for region in ("water", "mountain"):
            ys, xs = np.nonzero(canvas.obj == L[region])
            if ys.size:
                group_extent[-len(group_extent) - 1] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    for _, ext in sorted(group_extent.items()):
        boxes.append((0, ext[0], ext[1], ext[2], ext[3], True))
    return boxes


def render_batch(seeds: list[int] | range, size: int = 64, world: str = "classic") -> dict[str, np.ndarray]:
    """Render many scenes: arrays ``images`` (N,H,W,3) uint8, ``objects``, ``materials``, ``colors`` (N,H,W)
    uint8 and ``scenes`` (N,) int64."""
    scenes = [render_scene(int(seed), size, world) for seed in seeds]
    return {
        "images": np.stack([sc.image for sc in scenes]),
        "objects": np.stack([sc.objects for sc in scenes]),
        "materials": np.stack([sc.materials for sc in scenes]),
        "colors": np.stack([sc.colors for sc in scenes]),
        "scenes": np.array([sc.scene for sc in scenes], dtype=np.int64),
    }
