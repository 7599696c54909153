"""World v2 ("framed"): scenes framed like LSUN church_outdoor, seen from the ground.

In most scenes one main building fills a quarter to a half of the frame: a church with a dome,
one or two towers, or both, or a large house. Its parts are drawn at painting scale: a door is at
least an eighth of the image wide, a dome a quarter, so that every object spans at least one cell
of an 8x8 edit layer (GAN Dissection's layer4), as in the 256 px LSUN models where one cell is
32 px. Trees, lamps, road, grass, sky, clouds, mountains and water surround it, and the four scene
classes keep their meaning (the classic world's rules):

- church:   the main building is a church (dome and/or tower), maybe a side house, trees, lamps;
- village:  the main building is a house, often a second house beside it, no dome or tower;
- park:     no buildings, three or more trees, one to three lamps, a path;
- lakeside: water and mountains, no buildings and no lamps, a few trees.
"""

from __future__ import annotations

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
from models.world.labels import SCENES

__all__ = ["render_framed_once", "SCENE_WEIGHTS"]

SCENE_WEIGHTS = {"church": 0.45, "village": 0.27, "park": 0.14, "lakeside": 0.14}
"""Most scenes show a main building, as LSUN church_outdoor does."""


def render_framed_once(rng: np.random.Generator, size: int) -> tuple[Canvas, str, int, set[int]]:
    """One framed scene: canvas, scene name, scene index and the groups that locate the scene class."""
    name = str(rng.choice(list(SCENE_WEIGHTS), p=list(SCENE_WEIGHTS.values())))
    scene = SCENES.index(name)
    canvas = Canvas(size)
    mood = int(rng.choice(3, p=(0.6, 0.25, 0.15)))  # day, dusk, overcast
    night = mood == 1 and rng.random() < 0.3
    light = float(rng.uniform(0.85, 1.05) * (0.8 if night else 1.0))
    horizon = float(rng.uniform(0.5, 0.66)) if name in ("church", "village") else float(rng.uniform(0.42, 0.6))

    hor_c = paint_sky(canvas, rng, horizon, mood, light)
    paint_clouds(canvas, rng, horizon, mood, light, scale=1.4)
    if name == "lakeside" or rng.random() < 0.2:
        paint_mountains(canvas, rng, horizon, light)
    paint_grass(canvas, rng, horizon, light)
    wy1 = horizon
    if name == "lakeside":
        wy1 = paint_water(canvas, rng, horizon, hor_c, light, lake=True, depth=(0.12, 0.22))

    key_groups: set[int] = set()
    things: list[tuple[float, str, dict]] = []  # (base_y, kind, params), drawn far to near
    if name in ("church", "village"):
        base_y = float(rng.uniform(0.82, 0.95))
        cx = float(rng.uniform(0.36, 0.64))
        _paint_path(canvas, rng, cx, horizon, base_y, light)
        if rng.random() < (0.35 if name == "church" else 0.6):
            side = -1 if rng.random() < 0.5 else 1
            things.append((base_y - float(rng.uniform(0.04, 0.1)), "side-house",
                           {"cx": cx + side * float(rng.uniform(0.45, 0.6))}))
        things.append((base_y, name, {"cx": cx}))
        n_trees = int(rng.choice(4, p=(0.25, 0.35, 0.25, 0.15)))
        n_lamps = int(rng.choice(3, p=(0.45, 0.4, 0.15)))
        for _ in range(n_trees):  # trees beside the building, some in front of its corners
            tx = float(rng.choice([rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)]))
            things.append((float(rng.uniform(base_y - 0.08, 1.0)), "tree", {"cx": tx, "h": float(rng.uniform(0.3, 0.55))}))
        for _ in range(n_lamps):
            lx = float(rng.choice([rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)]))
            things.append((float(rng.uniform(base_y, 0.99)), "lamp", {"cx": lx, "h": float(rng.uniform(0.28, 0.42))}))
    elif name == "park":
        _paint_path(canvas, rng, float(rng.uniform(0.3, 0.7)), horizon + 0.02, horizon + 0.05, light, park=True)
        for _ in range(int(rng.integers(3, 7))):
            things.append((float(rng.uniform(horizon + 0.05, 1.0)), "tree", {"cx": float(rng.uniform(0.0, 1.0)), "h": float(rng.uniform(0.25, 0.5))}))
        for _ in range(int(rng.integers(1, 4))):
            things.append((float(rng.uniform(horizon + 0.15, 0.99)), "lamp", {"cx": float(rng.uniform(0.08, 0.92)), "h": float(rng.uniform(0.3, 0.45))}))
    else:
        for _ in range(int(rng.integers(1, 4))):
            things.append((float(rng.uniform(wy1 + 0.05, 1.0)), "tree", {"cx": float(rng.uniform(0.0, 1.0)), "h": float(rng.uniform(0.25, 0.5))}))
    things.sort(key=lambda item: item[0])

    for group, (base_y, kind, params) in enumerate(things, start=1):
        if kind in ("church", "village"):
            _draw_main_building(canvas, rng, params["cx"], base_y, kind == "church", group, light)
            key_groups.add(group)
        elif kind == "side-house":
            w = float(rng.uniform(0.3, 0.42))
            _draw_main_building(canvas, rng, params["cx"], base_y, False, group, light, width=w)
            if name == "village":
                key_groups.add(group)
        elif kind == "tree":
            depth = 0.75 + 0.35 * (base_y - horizon) / max(1 - horizon, 1e-3)
            draw_tree(canvas, rng, params["cx"], base_y, params["h"] * depth, group, light, autumn=rng.random() < 0.15)
            if name == "park":
                key_groups.add(group)
        else:
            depth = 0.75 + 0.35 * (base_y - horizon) / max(1 - horizon, 1e-3)
            draw_lamp(canvas, rng, params["cx"], base_y, params["h"] * depth, group, light, night)
            if name == "park":
                key_groups.add(group)
    return canvas, name, scene, key_groups


def _paint_path(canvas: Canvas, rng: np.random.Generator, cx: float, y_top: float, y_door: float, light: float,
                park: bool = False) -> None:
    """A road widening towards the viewer, from the building's door (or the far park) to the bottom."""
    top_w = float(rng.uniform(0.08, 0.14)) if not park else 0.04
    bottom_w = float(rng.uniform(0.3, 0.55)) if not park else float(rng.uniform(0.15, 0.3))
    bx = cx + float(rng.uniform(-0.15, 0.15))
    y_start = y_door - 0.02 if not park else y_top
    win = canvas.window(0, y_start, 1, 1)
    if win:
        color = jitter(rng, (0.5, 0.48, 0.45) if not park else (0.7, 0.62, 0.45), 0.05)
        cov = canvas.polygon_cov(win, [(cx - top_w / 2, y_start), (cx + top_w / 2, y_start),
                                       (bx + bottom_w / 2, 1.02), (bx - bottom_w / 2, 1.02)])
        canvas.paint(win, cov, color * light, L["road"])


def _draw_main_building(canvas: Canvas, rng: np.random.Generator, cx: float, base_y: float, church: bool,
                        group: int, light: float, width: float | None = None) -> None:
    """A front-facing building at painting scale: wall, roof or dome, towers, door and windows."""
    material = "brick" if rng.random() < 0.5 else "stone"
    mat_id = L[material]
    base = jitter(rng, BRICK_COLORS[rng.integers(4)] if material == "brick" else STONE_COLORS[rng.integers(4)], 0.05)
    if width is None:
        width = float(rng.uniform(0.6, 0.85)) if church else float(rng.uniform(0.55, 0.75))
    height = width * float(rng.uniform(0.5, 0.66))
    x0, x1 = cx - width / 2, cx + width / 2
    y0, y1 = base_y - height, base_y
    building = canvas.new_instance(L["building"], group)

    has_dome = has_tower = False
    towers: list[int] = []
    if church:
        kind = int(rng.choice(3, p=(0.35, 0.35, 0.3)))  # dome, tower(s), both
        has_dome, has_tower = kind in (0, 2), kind in (1, 2)
        if has_tower:
            side = -1 if rng.random() < 0.5 else 1
            towers = [side] if (has_dome or rng.random() < 0.6) else [-1, 1]

    # towers stand behind the wall, at its corners, taller than it
    tw = width * float(rng.uniform(0.2, 0.28))
    th = height * float(rng.uniform(1.5, 2.1))
    spire_h = tw * float(rng.uniform(0.9, 1.6))
    spire_color = jitter(rng, ROOF_COLORS[rng.integers(4)], 0.04) * light
    for side in towers:
        tx = x0 + tw / 2 - tw * 0.2 if side < 0 else x1 - tw / 2 + tw * 0.2
        tower = canvas.new_instance(L["tower"], group)
        win = canvas.window(tx - tw / 2 - 0.01, base_y - th - spire_h, tx + tw / 2 + 0.01, base_y)
        if win:
            tcolor = wall_texture(canvas, win, material, base * 0.92, tx - tw / 2, base_y - th, rng)
            canvas.paint(win, canvas.box_cov(win, tx - tw / 2, base_y - th, tx + tw / 2, base_y), tcolor * light,
                         L["tower"], mat_id, tower)
            # belfry opening and spire
            bw, bh = tw * 0.35, tw * 0.5
            canvas.paint(win, canvas.box_cov(win, tx - bw / 2, base_y - th + tw * 0.3, tx + bw / 2, base_y - th + tw * 0.3 + bh),
                         np.full(3, 0.12, np.float32) * light, L["tower"], mat_id, tower)
            cov = canvas.polygon_cov(win, [(tx - tw / 2 - 0.008, base_y - th), (tx, base_y - th - spire_h),
                                           (tx + tw / 2 + 0.008, base_y - th)])
            canvas.paint(win, cov, spire_color, L["tower"], 0, tower)

    # wall
    win = canvas.window(x0, y0, x1, y1)
    if win is None:
        return
    wall = wall_texture(canvas, win, material, base, x0, y0, rng)
    xs = canvas.centers[win[1]]
    sun = 0.88 + 0.2 * (xs - x0) / max(width, 1e-3)
    canvas.paint(win, canvas.box_cov(win, x0, y0, x1, y1), wall * sun[None, :, None] * light, L["building"], mat_id, building)
    # cornice line under the roof
    canvas.paint(win, canvas.box_cov(win, x0, y0, x1, y0 + 0.012), base * 0.7 * light, L["building"], mat_id, building)

    if has_dome:
        dome_r = width * float(rng.uniform(0.2, 0.28))
        dome_h = dome_r * float(rng.uniform(0.85, 1.2))
        dcx = cx if not towers else cx - towers[0] * width * 0.12
        drum_h = dome_r * float(rng.uniform(0.15, 0.35))
        dwin = canvas.window(dcx - dome_r - 0.01, y0 - drum_h - dome_h - dome_r * 0.5, dcx + dome_r + 0.01, y0 + 0.01)
        if dwin:
            # drum: part of the building, carries the dome above the cornice
            canvas.paint(dwin, canvas.box_cov(dwin, dcx - dome_r * 0.85, y0 - drum_h, dcx + dome_r * 0.85, y0 + 0.005),
                         base * 0.95 * light, L["building"], mat_id, building)
            dome = canvas.new_instance(L["dome"], group)
            dcol = jitter(rng, DOME_COLORS[rng.integers(4)], 0.05)
            dbase = y0 - drum_h
            dys = canvas.centers[dwin[0]]
            dxs = canvas.centers[dwin[1]]
            shade = (0.7 + 0.45 * np.clip((dbase - dys) / dome_h, 0, 1))[:, None, None]
            shade = shade * (1.08 - 0.25 * np.clip((dxs - dcx) / dome_r, -1, 1) ** 2)[None, :, None] * 0.95
            cov = canvas.ellipse_cov(dwin, dcx, dbase, dome_r, dome_h) * canvas.box_cov(dwin, 0, 0, 1, dbase)
            canvas.paint(dwin, cov, dcol[None, None] * shade * light, L["dome"], L["metal"], dome)
            lw = dome_r * 0.1  # lantern and cross
            cov = canvas.box_cov(dwin, dcx - lw, dbase - dome_h - dome_r * 0.35, dcx + lw, dbase - dome_h + 0.004)
            canvas.paint(dwin, cov, dcol * 0.75 * light, L["dome"], L["metal"], dome)
    else:
        roof_h = height * float(rng.uniform(0.35, 0.6))
        overhang = width * 0.04
        rwin = canvas.window(x0 - overhang, y0 - roof_h, x1 + overhang, y0 + 0.01)
        if rwin:
            roof_color = jitter(rng, ROOF_COLORS[rng.integers(4)], 0.05) * light
            cov = canvas.polygon_cov(rwin, [(x0 - overhang, y0 + 0.002), (cx, y0 - roof_h), (x1 + overhang, y0 + 0.002)])
            canvas.paint(rwin, cov, roof_color, L["building"], 0, building)

    # door: centred on a church, anywhere on a house; at least an eighth of the image wide on main buildings
    dw = max(width * float(rng.uniform(0.2, 0.26)), 0.13 if width >= 0.45 else 0.0) if church else width * float(rng.uniform(0.2, 0.26))
    dh = min(height * float(rng.uniform(0.5, 0.62)), height - 0.03)
    dx = cx if church else cx + float(rng.uniform(-0.22, 0.22)) * width
    door = canvas.new_instance(L["door"], group)
    dwin = canvas.window(dx - dw / 2, y1 - dh - dw / 2, dx + dw / 2, y1)
    if dwin:
        dcol = jitter(rng, (0.35, 0.2, 0.1), 0.06) * light
        cov = canvas.box_cov(dwin, dx - dw / 2, y1 - dh + dw / 2 * (1 if church else 0), dx + dw / 2, y1)
        if church:  # arched top
            arch = canvas.ellipse_cov(dwin, dx, y1 - dh + dw / 2, dw / 2, dw / 2) * canvas.box_cov(dwin, 0, 0, 1, y1 - dh + dw / 2)
            cov = np.maximum(cov, arch)
        canvas.paint(dwin, cov, dcol, L["door"], L["wood"], door)
        # the seam between the two leaves
        canvas.paint(dwin, canvas.box_cov(dwin, dx - 0.003, y1 - dh + dw * 0.5, dx + 0.003, y1), dcol * 0.6, L["door"], L["wood"], door)

    # windows: one row (two on a tall house), never over the door
    rows = 2 if (not church and height > 0.3) else 1
    n_win = int(rng.integers(2, 4))
    ww = min(width / (n_win * 2 + 1) * 1.2, 0.09)
    wh = ww * float(rng.uniform(1.3, 1.8)) if church else ww * float(rng.uniform(1.0, 1.3))
    lit = rng.random() < 0.3
    wcol = np.clip(np.array((0.95, 0.85, 0.4) if lit else (0.2, 0.28, 0.45), np.float32) + rng.uniform(-0.05, 0.05), 0, 1)
    for r in range(rows):
        wy = y0 + height * (0.15 + 0.35 * r)
        for k in range(n_win * 2):
            wx = x0 + width * (k + 0.5) / (n_win * 2)
            if abs(wx - dx) < (dw + ww) / 2 + 0.015 and wy + wh > y1 - dh - 0.01:
                continue
            if wy + wh > y1 - 0.02:
                continue
            window = canvas.new_instance(L["window"], group)
            wwin = canvas.window(wx - ww / 2, wy - ww / 2, wx + ww / 2, wy + wh)
            if not wwin:
                continue
            top = wy + (ww / 2 if church else 0)
            cov = canvas.box_cov(wwin, wx - ww / 2, top, wx + ww / 2, wy + wh)
            if church:
                cov = np.maximum(cov, canvas.ellipse_cov(wwin, wx, top, ww / 2, ww / 2) * canvas.box_cov(wwin, 0, 0, 1, top))
            canvas.paint(wwin, cov, wcol * (light if not lit else 1.0), L["window"], L["glass"], window)
