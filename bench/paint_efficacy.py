"""Does painting work? Concept share of painted regions by context, removal shares, side effects.

    python bench/paint_efficacy.py [--model world64] [--samples 200] [--first 50000] [--strength 0.5]

Everything is judged by the model's zoo segmenter on held-out sample ids (``first ..``; dissection
uses 0..N-1, the causal ranking the ids right after, learned insertion 20000..), with the painter's
own brush rule (``dissect_core.intervene.brush_edit``) at the given strength:

- insertion: in every sample, for every context (``ground``: grass / road without trees; ``sky``;
  ``building_top``: the sky just above a building's top edge; ``wall``: building wall) one random
  window of 2x2 edit-layer cells where the concept is absent is painted. Reported per concept and
  context: ``mean_share`` (mean share of the window's pixels that become the concept),
  ``half_or_more`` (share of windows at least half the concept), and ``outside_change`` (mean
  absolute pixel change outside the window and its one-cell border, 0..255);
- removal: the concept removed over the whole image: share of its pixels that disappear, on the
  samples where it covers at least ``--min-pixels`` pixels, pooled over samples
  (``removed_share``) and per sample (``per_sample_mean`` / ``_median``, on the samples where it
  covers at least ``--per-sample-cover`` of the image: a mean that large objects cannot dominate).

``targets`` checks the issue's acceptance numbers. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dissect_core.efficacy import (
    CONTEXTS,
    PaintResult,
    Window,
    brush_stroke,
    paint_share,
    painting_contexts,
    placed_masks,
    removal_share,
    render_samples,
)
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import load_table
from models.zoo import DEFAULT_GENERATOR, companion_id, get_entry, load_model

BRUSHES = ("tree", "grass", "dome", "door", "tower", "lamp", "window", "cloud", "building", "brick", "stone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help="zoo generator (default: the app default)")
    parser.add_argument("--table", type=Path, help="layer directory (default: the model's shipped layer4 table)")
    parser.add_argument("--segmenter", help="default: the model's own zoo segmenter")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--first", type=int, default=50000)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--min-pixels", type=int, default=8)
    parser.add_argument("--per-sample-cover", type=float, default=0.003,
                        help="per-sample removal counts samples where the concept covers at least this share")
    parser.add_argument("--concepts", nargs="*", default=list(BRUSHES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--placement", choices=["on", "off"], default="on",
                        help="place dome strokes as the painter does (dissect_core.placement)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    table_dir = args.table or get_entry(args.model).weights.parent / "dissection" / "layer4"
    table = load_table(table_dir)
    generator = load_model(args.model)
    segmenter = load_segmenter(args.segmenter or companion_id(args.model, "segmenter"))
    layer = table.layer
    grid = table.shape[1]
    ids = list(range(args.first, args.first + args.samples))
    x_all, img_all = render_samples(generator, layer, ids)
    with torch.no_grad():
        lab_all = torch.cat([segmenter(img_all[b:b + 25]) for b in range(0, len(ids), 25)])
    objects_all = lab_all[:, 0].cpu().numpy()
    rng = np.random.default_rng(0)

    report: dict[str, dict] = {}
    for name in args.concepts:
        try:
            number = table.label_number(name)
        except KeyError:
            continue
        category = table.labels[number][1]
        channel = list(segmenter.categories).index(category)
        segment = lambda images, c=channel: segmenter(images)[:, c]
        entry: dict = {"insertion": table.insertion(name)}
        # insertion by context
        stroke_for = brush_stroke(table, name, "add", args.strength)
        windows: list[Window] = []
        for i in range(len(ids)):
            objects = lab_all[i, 0].cpu().numpy()
            for context, cells in painting_contexts(objects, grid, number).items():
                if cells:
                    y, x = cells[rng.integers(len(cells))]
                    windows.append(Window(i, int(y), int(x), context))
        by_context: dict[str, list[PaintResult]] = {c: [] for c in CONTEXTS}
        for b in range(0, len(windows), 32):
            chunk = windows[b:b + 32]
            masks = placed_masks(name, chunk, objects_all, grid, img_all.shape[-1]) if args.placement == "on" else None
            results = paint_share(generator, layer, x_all, img_all, chunk, stroke_for, segment, number, masks)
            for w, r in zip(chunk, results):
                by_context[w.context].append(r)
        entry["contexts"] = {
            context: {"regions": len(rs), "mean_share": round(float(np.mean([r[0] for r in rs])), 4),
                      "half_or_more": round(float(np.mean([r[0] >= 0.5 for r in rs])), 4),
                      "outside_change": round(float(np.mean([r.outside_mean for r in rs])), 4),
                      "outside_max_pixel": round(float(np.max([r.outside_max for r in rs])), 2),
                      "outside_max_pixel_median": round(float(np.median([r.outside_max for r in rs])), 2)}
            for context, rs in by_context.items() if rs}
        # removal over the whole image
        remove = brush_stroke(table, name, "remove", args.strength)(torch.ones(grid, grid))
        present = [i for i in range(len(ids)) if int((lab_all[i, channel] == number).sum()) >= args.min_pixels]
        if present:
            before, removed = [], []
            for b in range(0, len(present), 32):
                rows = present[b:b + 32]
                nb, nr = removal_share(generator, layer, x_all[rows], lab_all[rows, channel], remove, segment, number)
                before.append(nb)
                removed.append(nr)
            n_before, n_removed = np.concatenate(before), np.concatenate(removed)
            pixels = lab_all.shape[-1] * lab_all.shape[-2]
            big = n_before >= args.per_sample_cover * pixels
            entry["removal"] = {
                "samples": len(present), "removed_share": round(int(n_removed.sum()) / max(int(n_before.sum()), 1), 4),
                "per_sample_samples": int(big.sum()),
                "per_sample_mean": round(float(np.mean(n_removed[big] / n_before[big])), 4) if big.any() else None,
                "per_sample_median": round(float(np.median(n_removed[big] / n_before[big])), 4) if big.any() else None,
            }
        report[name] = entry

    def share(concept: str, context: str) -> float | None:
        return report.get(concept, {}).get("contexts", {}).get(context, {}).get("mean_share")

    def removed(concept: str, key: str = "removed_share") -> float | None:
        return report.get(concept, {}).get("removal", {}).get(key)

    changes = [c["outside_change"] for e in report.values() for c in e.get("contexts", {}).values()]
    checks = {
        "tree_on_ground>=0.35": (share("tree", "ground"), lambda v: v >= 0.35),
        "dome_above_building_top>=0.30": (share("dome", "building_top"), lambda v: v >= 0.30),
        "door_on_wall>=0.20": (share("door", "wall"), lambda v: v >= 0.20),
        "lamps_removed>=0.70": (removed("lamp"), lambda v: v >= 0.70),
        "trees_removed>=0.50": (removed("tree"), lambda v: v >= 0.50),
        "trees_removed_per_sample>=0.50": (removed("tree", "per_sample_mean"), lambda v: v >= 0.50),
        "lamps_removed_per_sample>=0.80": (removed("lamp", "per_sample_mean"), lambda v: v >= 0.80),
        "max_outside_change<=1": (max(changes) if changes else None, lambda v: v <= 1.0),
    }
    targets = {k: {"value": v, "met": bool(v is not None and ok(v))} for k, (v, ok) in checks.items()}
    door_wall, door_sky = share("door", "wall"), share("door", "sky")
    targets["door_in_sky<=door_on_wall/4"] = {"value": door_sky, "met": bool(
        door_wall is not None and door_sky is not None and door_sky <= door_wall / 4)}
    tree_ground, tree_sky = share("tree", "ground"), share("tree", "sky")
    targets["tree_in_sky<=tree_on_ground"] = {"value": tree_sky, "met": bool(
        tree_ground is not None and tree_sky is not None and tree_sky <= tree_ground)}
    print(json.dumps({
        "benchmark": "paint_efficacy", "model": args.model, "table": str(table_dir), "layer": layer,
        "units": table.units, "samples": args.samples, "placement": args.placement, "first_id": args.first, "strength": args.strength,
        "region": "2x2 cells", "seconds": round(time.perf_counter() - start, 1), "targets": targets,
        "concepts": report,
    }, indent=2))


if __name__ == "__main__":
    main()
