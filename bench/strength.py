"""Does the strength slider matter over its whole range? The change a brush makes, per strength.

    python bench/strength.py [--model world128] [--samples 100] [--first 50000]
                             [--strengths 0 0.25 0.5 0.75 1]

For each draw brush and the place it is painted (tree on open ground, dome above a roof, door on a
wall: 2x2 cells, one window per held-out sample, contexts found with the model's segmenter) the
window is painted at each strength exactly as the painter does. Reported per strength: the mean
absolute change of the image from the unedited one (grey levels 0..255, averaged over RGB) inside
the window and its one-cell border, and the share of the window the segmenter labels as the
concept; and the two halves of the slider: the change from 0 to 0.5 and from 0.5 to 1 (mean
absolute difference between the images at those strengths). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib

import numpy as np
import torch
from benchutil import object_labels
from torch.nn import functional as F

from dissect_core.efficacy import Window, brush_stroke, painted_images, painting_contexts, placed_masks, render_samples, window_mask
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import load_table
from models.world.labels import LABEL_BY_NAME
from models.zoo import DEFAULT_GENERATOR, companion_id, get_entry, load_model

PLACES = {"tree": "ground", "dome": "building_top", "door": "wall"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_GENERATOR)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--first", type=int, default=50000)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    args = parser.parse_args()
    start = time.perf_counter()
    generator = load_model(args.model)
    table = load_table(get_entry(args.model).weights.parent / "dissection" / "layer4")
    segmenter = load_segmenter(companion_id(args.model, "segmenter"))
    layer, grid = table.layer, table.shape[1]
    ids = list(range(args.first, args.first + args.samples))
    x, images = render_samples(generator, layer, ids)
    labels = object_labels(segmenter, images)
    size = images.shape[-1]
    report = {}
    for concept, place in PLACES.items():
        number = LABEL_BY_NAME[concept].number
        rng = np.random.default_rng(zlib.crc32(concept.encode()))
        windows = []
        for i in range(len(ids)):
            found = painting_contexts(labels[i], grid, number)[place]
            if found:
                y, xx = found[rng.integers(len(found))]
                windows.append(Window(i, int(y), int(xx), place))
        masks = placed_masks(concept, windows, labels, grid, size)
        near = torch.stack([window_mask(w, size, grid, border=1) for w in windows]) > 0
        inside = torch.stack([window_mask(w, size, grid) for w in windows])
        base = images[[w.image for w in windows]]
        painted = {}
        rows = {}
        for s in args.strengths:
            out = torch.cat([painted_images(generator, layer, x, windows[b:b + 32], brush_stroke(table, concept, "add", s),
                                            size, masks[b:b + 32] if masks is not None else None)
                             for b in range(0, len(windows), 32)])
            painted[s] = out
            change = (out - base).abs().mean(1) * 127.5
            seg = object_labels(segmenter, out)
            small = (F.interpolate(inside[:, None], size=seg.shape[-1], mode="nearest")[:, 0] > 0).numpy()
            share = float(((seg == number) & small).sum() / small.sum())
            rows[str(s)] = {"change_near_window": round(float(change[near].mean()), 3), "window_share": round(share, 4)}

        def between(a: float, b: float) -> float | None:
            if a not in painted or b not in painted:
                return None
            return round(float(((painted[a] - painted[b]).abs().mean(1) * 127.5)[near].mean()), 3)

        report[concept] = {"place": place, "windows": len(windows), "by_strength": rows,
                           "halves": {"0->0.5": between(0.0, 0.5), "0.5->1": between(0.5, 1.0)}}
    print(json.dumps({"benchmark": "strength", "model": args.model, "samples": args.samples, "first_id": args.first,
                      "seconds": round(time.perf_counter() - start, 1), "concepts": report}, indent=1))


if __name__ == "__main__":
    main()
