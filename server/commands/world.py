"""``ganpaint world preview|broden``: look at the scene world, export it as a Broden probe set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from models.world import LABELS, SCENES, render_scene, world_seed
from models.world.broden import export_broden
from models.world.render import WORLDS
from server.commands import Command, CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("preview", "broden"),
                        help="preview: grid PNG of scenes and their object labels; broden: export a probe set")
    parser.add_argument("--out", type=Path, required=True, help="PNG file (preview) or directory (broden)")
    parser.add_argument("--count", type=int, default=64, help="number of scenes (default 64)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels, 8..1024 (default 64)")
    parser.add_argument("--split", default="probe", choices=("train", "heldout", "probe"),
                        help="which seed range to draw from (default probe)")
    parser.add_argument("--world", default="classic", choices=WORLDS,
                        help="classic (world v1, world64's data) or framed (world v2, one large building per scene)")
    parser.add_argument("--no-progress", action="store_true")


def _preview(out: Path, count: int, size: int, split: str, world: str) -> dict:
    columns = 8
    rows = -(-count // columns)
    palette = np.array([label.rgb for label in LABELS], np.uint8)
    grid = np.zeros((rows * size, columns * size * 2, 3), np.uint8)
    scenes = []
    for i in range(count):
        scene = render_scene(world_seed(split, i), size, world)
        r, c = divmod(i, columns)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = scene.image
        grid[r * size:(r + 1) * size, (columns + c) * size:(columns + c + 1) * size] = palette[scene.objects]
        scenes.append(SCENES[scene.scene])
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    return {"written": str(out), "scenes": scenes}


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 1_000_000:
        raise CommandError("--count must be between 1 and 1000000")
    if not 8 <= args.size <= 1024:
        raise CommandError("--size must be between 8 and 1024")
    if args.action == "preview":
        if args.count > 1024:
            raise CommandError("preview shows at most 1024 scenes")
        report = _preview(args.out, args.count, args.size, args.split, args.world)
    else:
        if args.out.exists() and any(args.out.iterdir()):
            raise CommandError(f"--out {args.out} exists and is not empty")
        export_broden(args.out, args.count, args.size, args.split, progress=not args.no_progress, world=args.world)
        report = {"written": str(args.out), "images": args.count}
    print(json.dumps(report))
    return 0


COMMAND = Command(name="world", help="preview the procedural scene world or export it in the Broden format",
                  add_arguments=add_arguments, run=run)
