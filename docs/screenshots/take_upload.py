"""Make the README screenshot of painting your own picture: a world render the GAN never generated
is uploaded in the painter, inverted, and a tree is painted on its open ground.

    python docs/screenshots/take_upload.py [--model world128] [--scene 17] [--count 40]

Picks among held-out renders ``--scene`` or, when it has no open ground, the first of ``--count``
that has (the painting contexts of ``bench/paint_efficacy.py``, found with the model's segmenter on
the picture, as the server does), starts the server, uploads the picture through the page's file
chooser, waits for the inversion job, paints a 2x2-cell tree like a user and saves ``upload.png``
next to this file. Needs Chromium and Playwright (never ``playwright install``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dissect_core.efficacy import painting_contexts  # noqa: E402
from dissect_core.segmenters import load_segmenter  # noqa: E402
from docs.screenshots.take import CHROMIUM_ARGS, serving  # noqa: E402
from models.inversion import picture_tensor  # noqa: E402
from models.world import render_scene, world_seed  # noqa: E402
from models.world.labels import LABEL_BY_NAME  # noqa: E402
from models.zoo import companion_id, model_world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="world128")
    parser.add_argument("--scene", type=int, default=17)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    segmenter = load_segmenter(companion_id(args.model, "segmenter"))
    tree = LABEL_BY_NAME["tree"].number
    chosen = None
    for index in [args.scene, *range(args.count)]:
        scene = render_scene(world_seed("heldout", index), 128, world=model_world(args.model))
        with torch.no_grad():
            labels = segmenter(picture_tensor(scene.image))[0, 0].numpy()
        ground = painting_contexts(labels, 8, tree)["ground"]
        if ground:
            chosen = (index, scene.image, min(ground))
            break
    if chosen is None:
        raise SystemExit("no held-out scene with open ground")
    index, image, (y, x) = chosen
    folder = Path(tempfile.mkdtemp(prefix="ganpaint-upload-"))
    picture = folder / f"scene-{index}.png"
    Image.fromarray(image).save(picture)
    with serving(args.model, str(folder / "cache")) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1060}, device_scale_factor=1)
        page.goto(f"{base}/?model={args.model}")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name="paint your own picture").click()
        chooser.value.set_files(str(picture))
        page.wait_for_function("() => document.getElementById('upload-status').textContent.includes('adapted')",
                               timeout=300_000)
        time.sleep(1)
        box = page.locator("#overlay").bounding_box()
        page.get_by_role("button", name="brush tree").click()
        page.locator("#brush-size").fill("30")  # one dab of the default 2x2-cell brush
        cy, cx = (y + 1) / 8, (x + 1) / 8
        page.mouse.click(box["x"] + cx * box["width"], box["y"] + cy * box["height"])
        page.mouse.move(box["x"] + box["width"] + 40, box["y"])  # the cursor ring off the picture
        time.sleep(3)
        status = page.locator("#upload-status").inner_text()
        page.screenshot(path=str(args.out / "upload.png"))
        browser.close()
    print(json.dumps({"model": args.model, "scene": index, "window": [int(y), int(x)], "status": status}))


if __name__ == "__main__":
    main()
