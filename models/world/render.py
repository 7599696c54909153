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

from models.world.labels import BOX_LABELS, LABELS, SCENES, color_names, label_id

__all__ = ["Scene", "render_scene", "render_batch", "world_seed", "SPLIT_OFFSETS", "WORLD_VERSION", "WORLDS"]

WORLD_VERSION = 2
"""Bumped whenever a change to the renderer changes any image or label (invalidates caches)."""

SPLIT_OFFSETS = {"train": 0, "heldout": 1_000_000_000, "probe": 2_000_000_000}

L = {label.name: label.number for label in LABELS[1:]}


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


class _Canvas:
    """Float RGB canvas plus label maps; shapes are painted inside their bounding box only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rgb = np.zeros((size, size, 3), np.float32)
        self.obj = np.zeros((size, size), np.uint8)
        self.mat = np.zeros((size, size), np.uint8)
        self.inst = np.zeros((size, size), np.int16)
        self.instances: list[tuple[int, int]] = [(0, 0)]  # instance -> (label, group)
        centers = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.centers = centers

    def new_instance(self, label: int, group: int) -> int:
        self.instances.append((label, group))
        return len(self.instances) - 1

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        s = self.size
        i0, i1 = max(int(np.floor(y0 * s)) - 1, 0), min(int(np.ceil(y1 * s)) + 1, s)
        j0, j1 = max(int(np.floor(x0 * s)) - 1, 0), min(int(np.ceil(x1 * s)) + 1, s)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def paint(
        self, win: tuple[slice, slice], cov: np.ndarray, color: np.ndarray,
        obj: int, mat: int = 0, inst: int = 0,
    ) -> None:
        ys, xs = win
        region = self.rgb[ys, xs]
        region += (np.asarray(color, np.float32) - region) * cov[..., None]
        hit = cov >= 0.5
        self.obj[ys, xs][hit] = obj
        self.mat[ys, xs][hit] = mat
        self.inst[ys, xs][hit] = inst

    # --- coverage functions (inside a window) -------------------------------------------------
    def box_cov(self, win: tuple[slice, slice], x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        s = self.size
        ys, xs = win
        px = np.arange(xs.start, xs.stop, dtype=np.float32)
        py = np.arange(ys.start, ys.stop, dtype=np.float32)
        cx = np.clip(np.minimum(px + 1, x1 * s) - np.maximum(px, x0 * s), 0, 1)
        cy = np.clip(np.minimum(py + 1, y1 * s) - np.maximum(py, y0 * s), 0, 1)
        return cy[:, None] * cx[None, :]

    def ellipse_cov(self, win: tuple[slice, slice], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        s = self.size
        ys, xs = win
        dx = (self.centers[xs] - cx) / rx
        dy = (self.centers[ys] - cy) / ry
        k = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
        return np.clip((1 - k) * min(rx, ry) * s + 0.5, 0, 1)

    def polygon_cov(self, win: tuple[slice, slice], points: list[tuple[float, float]]) -> np.ndarray:
        """Convex polygon, counter-clockwise or clockwise: max of edge half-plane distances."""
        s = self.size
        ys, xs = win
        gx = self.centers[xs][None, :]
        gy = self.centers[ys][:, None]
        pts = np.asarray(points, np.float32)
        area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
        sign = 1.0 if area > 0 else -1.0
        dist: np.ndarray | None = None
        for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
            ex, ey = bx - ax, by - ay
            norm = np.hypot(ex, ey) + 1e-9
            # cross > 0 puts the point left of the edge, which is inside when the signed area is > 0
            cross = ex * (gy - ay) - ey * (gx - ax)
            d = -sign * cross / norm
            dist = d if dist is None else np.maximum(dist, d)
        assert dist is not None  # a polygon has edges
        return np.clip(0.5 - dist * s, 0, 1)


def _jitter(rng: np.random.Generator, base: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 1)


_BRICK_COLORS = ((0.62, 0.27, 0.2), (0.7, 0.36, 0.24), (0.55, 0.22, 0.18), (0.75, 0.45, 0.3))
_STONE_COLORS = ((0.62, 0.6, 0.56), (0.72, 0.68, 0.6), (0.5, 0.5, 0.52), (0.8, 0.76, 0.66))
_ROOF_COLORS = ((0.45, 0.15, 0.12), (0.25, 0.25, 0.3), (0.5, 0.3, 0.2), (0.3, 0.2, 0.35))
_DOME_COLORS = ((0.85, 0.68, 0.2), (0.3, 0.6, 0.5), (0.25, 0.35, 0.7), (0.55, 0.55, 0.6))
_FOLIAGE = ((0.15, 0.45, 0.15), (0.2, 0.55, 0.2), (0.1, 0.35, 0.12), (0.35, 0.55, 0.15), (0.75, 0.45, 0.1))


def _wall_texture(canvas: _Canvas, win: tuple[slice, slice], material: str, base: np.ndarray,
                  x0: float, y0: float, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel wall colour: brick courses with offset joints, or large jittered stone blocks."""
    s = canvas.size
    ys, xs = win
    py = (canvas.centers[ys] - y0) * s
    px = (canvas.centers[xs] - x0) * s
    if material == "brick":
        course = max(s / 40.0, 1.0)
        row = np.floor(py / course)
        mortar_h = (py % course) < 0.45 * course
        offset = (row % 2) * course
        mortar_v = ((px[None, :] + offset[:, None]) % (2.2 * course)) < 0.35 * course
        mortar = mortar_h[:, None] | mortar_v
        shade = 1.0 - 0.35 * mortar
    else:
        block = max(s / 20.0, 1.5)
        by = np.floor(py / block).astype(np.int64)
        bx = np.floor((px[None, :] + (by[:, None] % 2) * block * 0.5) / (block * 1.4)).astype(np.int64)
        h = (bx * 73856093 ^ by[:, None] * 19349663) % 97 / 97.0
        joint = ((py % block) < 0.25 * block)[:, None]
        shade = (0.85 + 0.25 * h) * (1.0 - 0.25 * joint)
    return base[None, None, :] * shade[..., None].astype(np.float32)


def _draw_building(canvas: _Canvas, rng: np.random.Generator, cx: float, base_y: float, width: float,
                   height: float, church: bool, group: int, light: float) -> tuple[float, float, float, float]:
    """A wall with roof, door and windows; for a church also a dome and/or tower. Returns its box."""
    material = "brick" if rng.random() < 0.5 else "stone"
    base = _jitter(rng, _BRICK_COLORS[rng.integers(4)] if material == "brick" else _STONE_COLORS[rng.integers(4)], 0.05)
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
            tcolor = _wall_texture(canvas, win, material, base * 0.92, tx - tw / 2, base_y - th, rng)
            cov = canvas.box_cov(win, tx - tw / 2, base_y - th, tx + tw / 2, base_y)
            canvas.paint(win, cov, tcolor * light, L["tower"], mat_id, tower)
            spire_color = _jitter(rng, _ROOF_COLORS[rng.integers(4)], 0.04) * light
            spire_h = tw * rng.uniform(0.9, 1.6)
            cov = canvas.polygon_cov(win, [(tx - tw / 2 - 0.005, base_y - th), (tx, base_y - th - spire_h),
                                           (tx + tw / 2 + 0.005, base_y - th)])
            canvas.paint(win, cov, spire_color, L["tower"], 0, tower)
            top = min(top, base_y - th - spire_h)
            left, right = min(left, tx - tw / 2), max(right, tx + tw / 2)

    win = canvas.window(x0, y0 - height, x1, y1)
    if win is None:
        return (x0, y0, x1, y1)
    wall = _wall_texture(canvas, win, material, base, x0, y0, rng)
    xs = canvas.centers[win[1]]
    sun = 0.88 + 0.2 * (xs - x0) / max(width, 1e-3)
    canvas.paint(win, canvas.box_cov(win, x0, y0, x1, y1), wall * sun[None, :, None] * light, L["building"], mat_id, building)

    roof_color = _jitter(rng, _ROOF_COLORS[rng.integers(4)], 0.05) * light
    if has_dome:
        dome_r = width * rng.uniform(0.28, 0.42)
        dome_h = dome_r * rng.uniform(0.8, 1.25)
        dcx = cx + (width * 0.15 * -tower_side if has_tower else 0.0)
        dome = canvas.new_instance(L["dome"], group)
        dwin = canvas.window(dcx - dome_r, y0 - dome_h - dome_r * 0.5, dcx + dome_r, y0 + 0.01)
        if dwin:
            dcol = _jitter(rng, _DOME_COLORS[rng.integers(4)], 0.05)
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
        dcol = _jitter(rng, (0.35, 0.2, 0.1), 0.06) * light
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


def _draw_tree(canvas: _Canvas, rng: np.random.Generator, cx: float, base_y: float, height: float,
               group: int, light: float, autumn: bool) -> tuple[float, float, float, float]:
    tree = canvas.new_instance(L["tree"], group)
    trunk_w = height * rng.uniform(0.1, 0.16)
    trunk_h = height * rng.uniform(0.3, 0.45)
    crown_col = _jitter(rng, _FOLIAGE[4] if autumn else _FOLIAGE[rng.integers(4)], 0.05)
    conifer = rng.random() < 0.35
    crown_w = height * (rng.uniform(0.3, 0.42) if conifer else rng.uniform(0.35, 0.55))
    win = canvas.window(cx - crown_w - 0.01, base_y - height - 0.01, cx + crown_w + 0.01, base_y)
    if not win:
        return (cx, base_y, cx, base_y)
    cov = canvas.box_cov(win, cx - trunk_w / 2, base_y - trunk_h - 0.02, cx + trunk_w / 2, base_y)
    canvas.paint(win, cov, _jitter(rng, (0.35, 0.22, 0.12), 0.04) * light, L["tree"], L["wood"], tree)
    ys = canvas.centers[win[0]]
    shade = (1.15 - 0.45 * np.clip((ys - (base_y - height)) / height, 0, 1))[:, None, None]
    texture_noise = 1.0 + 0.12 * rng.standard_normal((ys.size, win[1].stop - win[1].start, 1)).astype(np.float32)
    color = crown_col[None, None] * shade * texture_noise * light
    if conifer:
        cov = canvas.polygon_cov(win, [(cx - crown_w, base_y - trunk_h * 0.7), (cx, base_y - height),
                                       (cx + crown_w, base_y - trunk_h * 0.7)])
    else:
        crown_h = height - trunk_h * 0.8
        ccy = base_y - trunk_h * 0.8 - crown_h / 2
        cov = canvas.ellipse_cov(win, cx, ccy, crown_w, crown_h / 2)
        for _ in range(2):
            ox, oy = rng.uniform(-0.5, 0.5) * crown_w, rng.uniform(-0.3, 0.2) * crown_h
            cov = np.maximum(cov, canvas.ellipse_cov(win, cx + ox, ccy + oy, crown_w * 0.6, crown_h * 0.32))
    canvas.paint(win, cov, np.clip(color, 0, 1), L["tree"], 0, tree)
    return (cx - crown_w, base_y - height, cx + crown_w, base_y)


def _draw_lamp(canvas: _Canvas, rng: np.random.Generator, cx: float, base_y: float, height: float,
               group: int, light: float, night: bool) -> tuple[float, float, float, float]:
    lamp = canvas.new_instance(L["lamp"], group)
    pole_w = max(height * 0.09, 1.6 / canvas.size)
    head_w = height * rng.uniform(0.28, 0.38)
    head_h = head_w * rng.uniform(0.8, 1.2)
    top = base_y - height
    win = canvas.window(cx - head_w, top - head_h * 0.3, cx + head_w, base_y)
    if not win:
        return (cx, base_y, cx, base_y)
    pole_col = _jitter(rng, (0.12, 0.12, 0.14), 0.03)
    canvas.paint(win, canvas.box_cov(win, cx - pole_w / 2, top + head_h * 0.5, cx + pole_w / 2, base_y),
                 pole_col, L["lamp"], L["metal"], lamp)
    canvas.paint(win, canvas.box_cov(win, cx - head_w * 0.6, top - head_h * 0.2, cx + head_w * 0.6, top + head_h * 0.05),
                 pole_col, L["lamp"], L["metal"], lamp)
    glow = np.array((1.0, 0.93, 0.55) if night or rng.random() < 0.6 else (0.9, 0.9, 0.8), np.float32)
    canvas.paint(win, canvas.box_cov(win, cx - head_w / 2, top, cx + head_w / 2, top + head_h), glow,
                 L["lamp"], L["glass"], lamp)
    return (cx - head_w * 0.6, top - head_h * 0.2, cx + head_w * 0.6, base_y)



def _paint_sky(canvas: _Canvas, rng: np.random.Generator, horizon: float, mood: int, light: float) -> np.ndarray:
    """Vertical sky gradient down to just below the horizon; returns the horizon colour."""
    s = canvas.size
    if mood == 0:
        top_c, hor_c = _jitter(rng, (0.3, 0.5, 0.85), 0.06), _jitter(rng, (0.65, 0.8, 0.95), 0.05)
    elif mood == 1:
        top_c, hor_c = _jitter(rng, (0.3, 0.3, 0.6), 0.06), _jitter(rng, (0.95, 0.6, 0.35), 0.06)
    else:
        top_c, hor_c = _jitter(rng, (0.55, 0.6, 0.68), 0.05), _jitter(rng, (0.75, 0.78, 0.8), 0.04)
    t = np.clip(canvas.centers / max(horizon, 1e-3), 0, 1)[:, None, None]
    sky = (top_c * (1 - t) + hor_c * t) * light
    win = (slice(0, s), slice(0, s))
    canvas.paint(win, canvas.box_cov(win, 0, 0, 1, horizon + 0.02), np.broadcast_to(sky, (s, s, 3)), L["sky"])
    return hor_c


def _paint_clouds(canvas: _Canvas, rng: np.random.Generator, horizon: float, mood: int, light: float,
                  scale: float = 1.0) -> None:
    """Zero to four clouds of overlapping ellipses in the upper sky; ``scale`` sizes them."""
    for _ in range(int(rng.choice(5, p=(0.2, 0.3, 0.25, 0.15, 0.1)))):
        cx, cy = rng.uniform(0.0, 1.0), rng.uniform(0.06, horizon * 0.6)
        rx, ry = rng.uniform(0.08, 0.18) * scale, rng.uniform(0.03, 0.06) * scale
        cloud = canvas.new_instance(L["cloud"], 0)
        cwin = canvas.window(cx - rx * 1.6, cy - ry * 2, cx + rx * 1.6, cy + ry * 1.2)
        if not cwin:
            continue
        cov = canvas.ellipse_cov(cwin, cx, cy, rx, ry)
        for _ in range(3):
            cov = np.maximum(cov, canvas.ellipse_cov(cwin, cx + rng.uniform(-0.6, 0.6) * rx, cy - rng.uniform(0, 0.8) * ry,
                                                     rx * rng.uniform(0.35, 0.6), ry * rng.uniform(0.8, 1.2)))
        ccol = _jitter(rng, (0.97, 0.97, 0.98) if mood != 2 else (0.85, 0.86, 0.88), 0.03)
        if mood == 1:
            ccol = ccol * np.array((1.0, 0.85, 0.8), np.float32)
        canvas.paint(cwin, cov, ccol * light, L["cloud"], 0, cloud)


def _paint_mountains(canvas: _Canvas, rng: np.random.Generator, horizon: float, light: float,
                     scale: float = 1.0) -> None:
    """One or two ridges of summed sines standing on the horizon, sometimes snow-capped."""
    s = canvas.size
    for layer in range(int(rng.integers(1, 3))):
        peak = float(rng.uniform(0.12, 0.28)) * (1.0 if layer == 0 else 0.7) * scale
        xs = canvas.centers
        phase = rng.uniform(0, 2 * np.pi, 3)
        freq = rng.uniform(2, 6, 3)
        ridge = horizon - peak * (0.55 + 0.45 * (
            np.sin(xs * freq[0] * np.pi + phase[0]) * 0.5 + np.sin(xs * freq[1] * np.pi + phase[1]) * 0.3
            + np.sin(xs * freq[2] * 2 * np.pi + phase[2]) * 0.2))
        mwin = (slice(0, s), slice(0, s))
        ys = canvas.centers[:, None]
        cov = np.clip((ys - ridge[None, :]) * s + 0.5, 0, 1) * canvas.box_cov(mwin, 0, 0, 1, horizon + 0.02)
        base_c = _jitter(rng, (0.42, 0.42, 0.52) if layer == 0 else (0.35, 0.42, 0.35), 0.06)
        height_frac = np.clip((horizon - ys) / peak, 0, 1)
        color = base_c[None, None] * (0.85 + 0.3 * height_frac[..., None])
        if rng.random() < 0.4:  # snow caps
            snow = np.clip((height_frac - 0.7) * 6, 0, 1)[..., None]
            color = color * (1 - snow) + 0.95 * snow
        canvas.paint(mwin, cov, np.broadcast_to(color * light, (s, s, 3)), L["mountain"])


def _paint_grass(canvas: _Canvas, rng: np.random.Generator, horizon: float, light: float) -> None:
    """Grass from the horizon down, lighter towards the viewer, with per-pixel noise."""
    s = canvas.size
    grass_c = _jitter(rng, (0.3, 0.6, 0.22) if rng.random() < 0.8 else (0.55, 0.6, 0.25), 0.06)
    gwin = canvas.window(0, horizon, 1, 1)
    if gwin is None:
        return
    ys = canvas.centers[gwin[0]]
    depth = np.clip((ys - horizon) / (1 - horizon), 0, 1)[:, None, None]
    noise = 1.0 + 0.1 * rng.standard_normal((ys.size, s, 1)).astype(np.float32)
    grass = grass_c * (0.8 + 0.35 * depth) * noise * light
    canvas.paint(gwin, canvas.box_cov(gwin, 0, horizon, 1, 1), np.clip(grass, 0, 1), L["grass"])



def _paint_water(canvas: _Canvas, rng: np.random.Generator, horizon: float, hor_c: np.ndarray, light: float,
                 lake: bool, depth: tuple[float, float] = (0.12, 0.3)) -> float:
    """A lake band from the horizon down (``lake``) or a pond; returns the water's lower edge."""
    s = canvas.size
    wy1 = horizon + float(rng.uniform(*depth))
    wwin = canvas.window(0, horizon, 1, wy1)
    if wwin:
        ys = canvas.centers[wwin[0]]
        wc = _jitter(rng, (0.2, 0.4, 0.7), 0.06) * 0.7 + hor_c * 0.3
        ripple = 1.0 + 0.12 * np.sin(ys * s * 2.1 + rng.uniform(0, 6))[:, None, None]
        cov = canvas.box_cov(wwin, 0, horizon, 1, wy1)
        if not lake:
            cov = canvas.ellipse_cov(wwin, rng.uniform(0.3, 0.7), (horizon + wy1) / 2, rng.uniform(0.2, 0.4), (wy1 - horizon) / 2)
        canvas.paint(wwin, cov, np.broadcast_to(np.clip(wc * ripple * light, 0, 1), cov.shape + (3,)), L["water"])
    return wy1


MAX_ATTEMPTS = 16

# Visible pixels (as a fraction of the image) that a scene's defining objects must keep after
# occlusion, so that every scene can be told apart by what it shows.
_MIN_VISIBLE = {"park": (("lamp",), ("tree",)), "church": (("dome", "tower"),), "village": (("building",),),
                "lakeside": (("water",), ("mountain",))}


def _defining_objects_visible(canvas: _Canvas, name: str) -> bool:
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
        from models.world.framed import render_framed_once

        return render_framed_once
    raise ValueError(f"unknown world {world!r}; worlds are {', '.join(WORLDS)}")


def _render_once(rng: np.random.Generator, size: int) -> tuple[_Canvas, str, int, set[int]]:
    scene = int(rng.integers(len(SCENES)))
    name = SCENES[scene]
    canvas = _Canvas(size)
    mood = rng.choice(3, p=(0.6, 0.25, 0.15))  # day, dusk, overcast
    night = mood == 1 and rng.random() < 0.3
    light = float(rng.uniform(0.85, 1.05) * (0.8 if night else 1.0))
    horizon = float(rng.uniform(0.42, 0.58))

    hor_c = _paint_sky(canvas, rng, horizon, mood, light)
    _paint_clouds(canvas, rng, horizon, mood, light)
    has_mountain = name == "lakeside" or rng.random() < 0.25
    if has_mountain:
        _paint_mountains(canvas, rng, horizon, light)
    _paint_grass(canvas, rng, horizon, light)

    # water
    if name == "lakeside" or (name == "park" and rng.random() < 0.2):
        wy1 = _paint_water(canvas, rng, horizon, hor_c, light, lake=name == "lakeside")
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
            road_c = _jitter(rng, (0.5, 0.48, 0.45) if name != "park" else (0.7, 0.62, 0.45), 0.05)
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
            _draw_tree(canvas, rng, params["cx"], base_y, float(rng.uniform(0.2, 0.38)) * perspective, index, light,
                       autumn=rng.random() < 0.15)
            if name == "park":
                key_groups.add(index)
        else:
            _draw_lamp(canvas, rng, params["cx"], base_y, float(rng.uniform(0.2, 0.3)) * perspective, index, light, night)
            if name == "park":
                key_groups.add(index)

    return canvas, name, scene, key_groups


_BOX_IDS = {label_id(n) for n in BOX_LABELS}


def _boxes(canvas: _Canvas, key_groups: set[int], scene_name: str) -> list[tuple[int, int, int, int, int, bool]]:
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
