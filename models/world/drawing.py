"""Drawing primitives both scene worlds paint with: the anti-aliased label canvas, colours, skies,
ground, water, mountains, trees and lamps. ``render`` (world v1) and ``framed`` (world v2) compose
scenes from these; neither imports the other's internals.
"""

from __future__ import annotations

import numpy as np

from models.world.labels import LABELS

__all__ = ["Canvas", "L", "jitter", "BRICK_COLORS", "STONE_COLORS", "ROOF_COLORS", "DOME_COLORS", "FOLIAGE",
           "wall_texture", "draw_tree", "draw_lamp", "paint_sky", "paint_clouds", "paint_mountains", "paint_grass",
           "paint_water"]

L = {label.name: label.number for label in LABELS[1:]}
"""Label number by name."""


class Canvas:
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


def jitter(rng: np.random.Generator, base: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 1)


BRICK_COLORS = ((0.62, 0.27, 0.2), (0.7, 0.36, 0.24), (0.55, 0.22, 0.18), (0.75, 0.45, 0.3))
STONE_COLORS = ((0.62, 0.6, 0.56), (0.72, 0.68, 0.6), (0.5, 0.5, 0.52), (0.8, 0.76, 0.66))
ROOF_COLORS = ((0.45, 0.15, 0.12), (0.25, 0.25, 0.3), (0.5, 0.3, 0.2), (0.3, 0.2, 0.35))
DOME_COLORS = ((0.85, 0.68, 0.2), (0.3, 0.6, 0.5), (0.25, 0.35, 0.7), (0.55, 0.55, 0.6))
FOLIAGE = ((0.15, 0.45, 0.15), (0.2, 0.55, 0.2), (0.1, 0.35, 0.12), (0.35, 0.55, 0.15), (0.75, 0.45, 0.1))


def wall_texture(canvas: Canvas, win: tuple[slice, slice], material: str, base: np.ndarray,
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


def draw_tree(canvas: Canvas, rng: np.random.Generator, cx: float, base_y: float, height: float,
               group: int, light: float, autumn: bool) -> tuple[float, float, float, float]:
    tree = canvas.new_instance(L["tree"], group)
    trunk_w = height * rng.uniform(0.1, 0.16)
    trunk_h = height * rng.uniform(0.3, 0.45)
    crown_col = jitter(rng, FOLIAGE[4] if autumn else FOLIAGE[rng.integers(4)], 0.05)
    conifer = rng.random() < 0.35
    crown_w = height * (rng.uniform(0.3, 0.42) if conifer else rng.uniform(0.35, 0.55))
    win = canvas.window(cx - crown_w - 0.01, base_y - height - 0.01, cx + crown_w + 0.01, base_y)
    if not win:
        return (cx, base_y, cx, base_y)
    cov = canvas.box_cov(win, cx - trunk_w / 2, base_y - trunk_h - 0.02, cx + trunk_w / 2, base_y)
    canvas.paint(win, cov, jitter(rng, (0.35, 0.22, 0.12), 0.04) * light, L["tree"], L["wood"], tree)
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


def draw_lamp(canvas: Canvas, rng: np.random.Generator, cx: float, base_y: float, height: float,
               group: int, light: float, night: bool) -> tuple[float, float, float, float]:
    lamp = canvas.new_instance(L["lamp"], group)
    pole_w = max(height * 0.09, 1.6 / canvas.size)
    head_w = height * rng.uniform(0.28, 0.38)
    head_h = head_w * rng.uniform(0.8, 1.2)
    top = base_y - height
    win = canvas.window(cx - head_w, top - head_h * 0.3, cx + head_w, base_y)
    if not win:
        return (cx, base_y, cx, base_y)
    pole_col = jitter(rng, (0.12, 0.12, 0.14), 0.03)
    canvas.paint(win, canvas.box_cov(win, cx - pole_w / 2, top + head_h * 0.5, cx + pole_w / 2, base_y),
                 pole_col, L["lamp"], L["metal"], lamp)
    canvas.paint(win, canvas.box_cov(win, cx - head_w * 0.6, top - head_h * 0.2, cx + head_w * 0.6, top + head_h * 0.05),
                 pole_col, L["lamp"], L["metal"], lamp)
    glow = np.array((1.0, 0.93, 0.55) if night or rng.random() < 0.6 else (0.9, 0.9, 0.8), np.float32)
    canvas.paint(win, canvas.box_cov(win, cx - head_w / 2, top, cx + head_w / 2, top + head_h), glow,
                 L["lamp"], L["glass"], lamp)
    return (cx - head_w * 0.6, top - head_h * 0.2, cx + head_w * 0.6, base_y)



def paint_sky(canvas: Canvas, rng: np.random.Generator, horizon: float, mood: int, light: float) -> np.ndarray:
    """Vertical sky gradient down to just below the horizon; returns the horizon colour."""
    s = canvas.size
    if mood == 0:
        top_c, hor_c = jitter(rng, (0.3, 0.5, 0.85), 0.06), jitter(rng, (0.65, 0.8, 0.95), 0.05)
    elif mood == 1:
        top_c, hor_c = jitter(rng, (0.3, 0.3, 0.6), 0.06), jitter(rng, (0.95, 0.6, 0.35), 0.06)
    else:
        top_c, hor_c = jitter(rng, (0.55, 0.6, 0.68), 0.05), jitter(rng, (0.75, 0.78, 0.8), 0.04)
    t = np.clip(canvas.centers / max(horizon, 1e-3), 0, 1)[:, None, None]
    sky = (top_c * (1 - t) + hor_c * t) * light
    win = (slice(0, s), slice(0, s))
    canvas.paint(win, canvas.box_cov(win, 0, 0, 1, horizon + 0.02), np.broadcast_to(sky, (s, s, 3)), L["sky"])
    return hor_c


def paint_clouds(canvas: Canvas, rng: np.random.Generator, horizon: float, mood: int, light: float,
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
        ccol = jitter(rng, (0.97, 0.97, 0.98) if mood != 2 else (0.85, 0.86, 0.88), 0.03)
        if mood == 1:
            ccol = ccol * np.array((1.0, 0.85, 0.8), np.float32)
        canvas.paint(cwin, cov, ccol * light, L["cloud"], 0, cloud)


def paint_mountains(canvas: Canvas, rng: np.random.Generator, horizon: float, light: float,
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
        base_c = jitter(rng, (0.42, 0.42, 0.52) if layer == 0 else (0.35, 0.42, 0.35), 0.06)
        height_frac = np.clip((horizon - ys) / peak, 0, 1)
        color = base_c[None, None] * (0.85 + 0.3 * height_frac[..., None])
        if rng.random() < 0.4:  # snow caps
            snow = np.clip((height_frac - 0.7) * 6, 0, 1)[..., None]
            color = color * (1 - snow) + 0.95 * snow
        canvas.paint(mwin, cov, np.broadcast_to(color * light, (s, s, 3)), L["mountain"])


def paint_grass(canvas: Canvas, rng: np.random.Generator, horizon: float, light: float) -> None:
    """Grass from the horizon down, lighter towards the viewer, with per-pixel noise."""
    s = canvas.size
    grass_c = jitter(rng, (0.3, 0.6, 0.22) if rng.random() < 0.8 else (0.55, 0.6, 0.25), 0.06)
    gwin = canvas.window(0, horizon, 1, 1)
    if gwin is None:
        return
    ys = canvas.centers[gwin[0]]
    depth = np.clip((ys - horizon) / (1 - horizon), 0, 1)[:, None, None]
    noise = 1.0 + 0.1 * rng.standard_normal((ys.size, s, 1)).astype(np.float32)
    grass = grass_c * (0.8 + 0.35 * depth) * noise * light
    canvas.paint(gwin, canvas.box_cov(gwin, 0, horizon, 1, 1), np.clip(grass, 0, 1), L["grass"])



def paint_water(canvas: Canvas, rng: np.random.Generator, horizon: float, hor_c: np.ndarray, light: float,
                 lake: bool, depth: tuple[float, float] = (0.12, 0.3)) -> float:
    """A lake band from the horizon down (``lake``) or a pond; returns the water's lower edge."""
    s = canvas.size
    wy1 = horizon + float(rng.uniform(*depth))
    wwin = canvas.window(0, horizon, 1, wy1)
    if wwin:
        ys = canvas.centers[wwin[0]]
        wc = jitter(rng, (0.2, 0.4, 0.7), 0.06) * 0.7 + hor_c * 0.3
        ripple = 1.0 + 0.12 * np.sin(ys * s * 2.1 + rng.uniform(0, 6))[:, None, None]
        cov = canvas.box_cov(wwin, 0, horizon, 1, wy1)
        if not lake:
            cov = canvas.ellipse_cov(wwin, rng.uniform(0.3, 0.7), (horizon + wy1) / 2, rng.uniform(0.2, 0.4), (wy1 - horizon) / 2)
        canvas.paint(wwin, cov, np.broadcast_to(np.clip(wc * ripple * light, 0, 1), cov.shape + (3,)), L["water"])
    return wy1
