"""Make the README screenshots: the painter with concepts drawn where they fit (default a tree on open
ground and a dome on a building top) and a removed lamp, and the unit browser. Needs Chromium and Playwright (``apt-get install chromium``; ``pip install
playwright``; never ``playwright install``).

    python docs/screenshots/take.py [--model world128] [--samples 600] [--draw tree:ground dome:building_top] [--remove-strength 100]

Picks, with the model's own segmenter, a sample that has a lamp and a window of every ``--draw``
context (the painting contexts of ``bench/paint_efficacy.py``: ground, sky, building_top, wall),
starts the server, paints those places in the browser like a user and saves ``painter.png`` and
``units.png`` next to this file. Prints what it painted as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dissect_core.efficacy import painting_contexts  # noqa: E402
from dissect_core.segmenters import load_segmenter  # noqa: E402
from models.samples import z_tensor  # noqa: E402
from models.world.labels import LABEL_BY_NAME  # noqa: E402
from models.zoo import companion_id, load_model  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _where_a_user_paints(context: str, windows: list[tuple[int, int]]) -> tuple[int, int]:
    """On the ground, the window nearest the horizon (a tree on the lawn beside the building, not in
    the foreground); elsewhere the middle one of the list."""
    if context == "ground":
        top = min(y for y, _ in windows)
        row = [w for w in windows if w[0] == top]
        return row[len(row) // 2]
    return windows[len(windows) // 2]


def pick_sample(model: str, samples: int, draws: list[tuple[str, str]]) -> dict:
    """The sample with the most lamp pixels (up to 4 % of the image) among those with a free window
    for every (concept, context), away from the lamp's columns."""
    generator = load_model(model)
    segmenter = load_segmenter(companion_id(model, "segmenter"))
    names = {name: label.number for name, label in LABEL_BY_NAME.items()}
    grid = generator.layer_shape("layer4")[1]
    best = None
    with torch.no_grad():
        for start in range(0, samples, 32):
            ids = list(range(start, min(samples, start + 32)))
            labels = segmenter(generator(z_tensor(ids, generator.z_dim)).clamp(-1, 1))[:, 0].numpy()
            max_lamp = labels.shape[-1] * labels.shape[-2] // 25
            for i, objects in zip(ids, labels):
                windows = [painting_contexts(objects, grid, names[concept], names)[context]
                           for concept, context in draws]
                lamp = np.argwhere(objects == names["lamp"])
                if not all(windows) or not 20 <= len(lamp) <= max_lamp:  # a lamp, not one filling the frame
                    continue
                painted = [list(_where_a_user_paints(context, w)) for (_, context), w in zip(draws, windows)]
                cell = objects.shape[-1] // grid
                lamp_cells = range(lamp[:, 1].min() // cell - 1, lamp[:, 1].max() // cell + 2)
                if any(x in lamp_cells or x + 1 in lamp_cells for _, x in painted):
                    continue  # removing the lamp would repaint the cells drawn on
                if best is None or len(lamp) > best["lamp_pixels"]:
                    best = {"sample": i, "draw": [[concept, context, where]
                                                  for (concept, context), where in zip(draws, painted)],
                            "lamp_box": [int(v) for v in (*lamp.min(0), *lamp.max(0))], "lamp_pixels": len(lamp),
                            "label_size": int(objects.shape[-1]), "grid": grid,
                            "cell_px": generator.resolution // grid}
    if best is None:
        raise SystemExit(f"no sample in 0..{samples - 1} has a lamp and windows for {draws}")
    return best


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model: str, cache_dir: str) -> Iterator[str]:
    """``ganpaint serve`` of ``model`` on a free port of 127.0.0.1, ready; yields its base URL."""
    port = free_port()
    env = {**os.environ, "GANPAINT_DEFAULT_MODEL": model, "GANPAINT_CACHE_DIR": cache_dir}
    server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--log-level",
                               "warning"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="world128")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--remove-strength", type=int, default=100, help="strength of the lamp removal in %% (100)")
    parser.add_argument("--draw", nargs="+", default=["tree:ground", "dome:building_top"],
                        help="CONCEPT:CONTEXT pairs to draw (contexts: ground, sky, building_top, wall)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    draws = [tuple(item.split(":", 1)) for item in args.draw]
    chosen = pick_sample(args.model, args.samples, draws)
    with serving(args.model, tempfile.mkdtemp(prefix="ganpaint-shots-")) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        page.goto(f"{base}/?model={args.model}&sample={chosen['sample']}")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        time.sleep(2)
        box = page.locator("#overlay").bounding_box()
        grid = chosen["grid"]

        def at(fy: float, fx: float) -> tuple[float, float]:
            return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

        def stroke(points: list[tuple[float, float]]) -> None:
            page.mouse.move(*at(*points[0]))
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*at(*point), steps=8)
            page.mouse.up()
            time.sleep(2.5)

        page.locator("#brush-size").fill(str(min(40, chosen["cell_px"])))  # one edit cell wide
        for concept, _, (y, x) in chosen["draw"]:
            page.get_by_role("button", name=f"brush {concept}").click()
            page.get_by_role("button", name="draw (B)").click()
            cy, cx = (y + 1) / grid, (x + 1) / grid  # centre of the 2x2-cell window
            d = 0.5 / grid
            stroke([(cy - d, cx - d), (cy - d, cx + d), (cy + d, cx + d), (cy + d, cx - d), (cy, cx)])
        y0, x0, y1, x1 = (v / chosen["label_size"] for v in chosen["lamp_box"])
        page.get_by_role("button", name="brush lamp").click()
        page.get_by_role("button", name="remove (R)").click()
        page.locator("#strength").fill(str(args.remove_strength))
        pad = 1 / grid
        top, bottom = max(0.01, y0 - pad), min(0.99, y1 + pad)
        left, right = max(0.01, x0 - pad), min(0.99, x1 + pad)
        rows = np.arange(top, bottom + 1e-9, 0.5 / grid)  # a zigzag that covers the lamp's box
        stroke([(y, right if i % 2 else left) for i, y in enumerate(rows)] + [(bottom, right)])
        page.screenshot(path=str(args.out / "painter.png"))
        page.goto(f"{base}/units")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        time.sleep(3)
        page.screenshot(path=str(args.out / "units.png"))
        browser.close()
    print(json.dumps({"model": args.model, **chosen}))


if __name__ == "__main__":
    main()
