"""How well painting works: ablation removal curves and insertion success by context.

    python bench/paint_efficacy.py --table runs/dissect/layer4 [--samples 1000] [--first 10000]

Uses the table's rankings (causal where measured, else IoU) on samples not used to build them
(ids ``first .. first+samples-1``; dissection uses 0..N-1 and the causal ranking the ids after it).

- Ablation: for every concept, the share of its pixels (as the segmenter sees them) removed by
  setting its top 2 %, 4 %, 8 % and 16 % units to zero, measured on the samples where it is present.
- Insertion: 2x2-cell regions of the edit layer where the concept is absent, by context
  (``ground``: at least half grass, road or water; ``sky``: mostly sky or cloud; ``building_top``:
  sky above a building's top edge). Success = the concept covers >= ``min_pixels`` pixels inside
  the region after painting. Three ways are reported: ``units_q99`` (the concept's top 8 % units
  at their q99 level, as GANPaint), and the painter's brush (``dissect_core.intervene.brush_edit``:
  the concept's mean feature where the table has it) at the default strength 0.5 (``brush_0.5``)
  and at full strength (``brush_1.0``).

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dissect_core.causal import ablation_effect, insertion_effect, label_counts
from dissect_core.intervene import brush_edit
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import load_table
from models.samples import z_tensor
from models.world.labels import label_id
from models.zoo import load_model

FRACTIONS = (0.02, 0.04, 0.08, 0.16)


def region_chooser(concept: int, rng: np.random.Generator, grid: int):  # noqa: ANN201
    sky = [label_id("sky"), label_id("cloud")]
    ground = [label_id("grass"), label_id("road"), label_id("water")]
    building = label_id("building")

    def choose(labels: torch.Tensor) -> list[tuple[int, int, int, int, int, str]]:
        obj = labels[:, 0].cpu().numpy()
        n, size, _ = obj.shape
        cell = size // grid
        regions = []
        for i in range(n):
            blocks = obj[i].reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, -1)
            frac = lambda ids: np.isin(blocks, ids).mean(-1)  # noqa: E731
            has_concept = np.isin(blocks, [concept]).any(-1)
            sky_f, ground_f, build_f = frac(sky), frac(ground), frac([building])
            candidates: dict[str, list[tuple[int, int]]] = {"ground": [], "sky": [], "building_top": []}
            for y in range(grid - 1):
                for x in range(grid - 1):
                    if has_concept[y:y + 2, x:x + 2].any():
                        continue
                    if ground_f[y:y + 2, x:x + 2].mean() >= 0.5:
                        candidates["ground"].append((y, x))
                    if sky_f[y:y + 2, x:x + 2].mean() >= 0.75:
                        candidates["sky"].append((y, x))
                    if sky_f[y, x:x + 2].mean() >= 0.5 and build_f[y + 1, x:x + 2].mean() >= 0.3:
                        candidates["building_top"].append((y, x))
            for context, cells in candidates.items():
                if cells:
                    y, x = cells[rng.integers(len(cells))]
                    regions.append((i, y, x, y + 2, x + 2, context))
        return regions

    return choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, required=True, help="a layer directory written by `ganpaint dissect`")
    parser.add_argument("--model", default="world64")
    parser.add_argument("--segmenter", default="world64/segmenter")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--first", type=int, default=10000)
    parser.add_argument("--max-present", type=int, default=300, help="ablation: at most this many samples per concept")
    parser.add_argument("--min-pixels", type=int, default=8)
    parser.add_argument("--insert-samples", type=int, default=200, help="insertion: the first this many samples")
    parser.add_argument("--concepts", nargs="*", help="default: every object and material concept")
    args = parser.parse_args()

    start = time.perf_counter()
    table = load_table(args.table)
    generator = load_model(args.model)
    segmenter = load_segmenter(args.segmenter)
    layer = table.layer
    units, grid, _ = table.shape
    ids = list(range(args.first, args.first + args.samples))
    n_labels = len(segmenter.labels)
    counts = []
    with torch.no_grad():
        for b in range(0, len(ids), 50):
            batch = ids[b:b + 50]
            counts.append(label_counts(segmenter(generator(z_tensor(batch, generator.z_dim)).clamp(-1, 1)), n_labels))
    counts = torch.cat(counts).numpy()
    names = args.concepts or [name for n, (name, cat) in enumerate(table.labels) if cat in ("object", "material")]
    report: dict[str, dict] = {}
    for name in names:
        number = table.label_number(name)
        ranking = table.concept_ranking(name)
        present = [i for i, c in zip(ids, counts[:, number]) if c >= args.min_pixels][: args.max_present]
        entry: dict = {"ranking": "causal" if name in table.causal else "iou", "samples_present": len(present)}
        if present:
            sets = [ranking[: max(1, round(f * units))] for f in FRACTIONS]
            removed = ablation_effect(generator, layer, segmenter, number, sets, present)
            entry["ablation_removed"] = {f"{f:.0%}": round(r, 4) for f, r in zip(FRACTIONS, removed)}
        k = max(1, round(0.08 * units))
        top = ranking[:k]
        ways = {"units_q99": (top, [float(table.q99[u]) for u in top], 1.0)}
        for strength in (0.5, 1.0):
            ways[f"brush_{strength}"] = brush_edit(table, name, "add", strength)
        entry["insertion_mode"] = table.insertion(name)
        entry["insertion"] = {}
        for way, (chosen, values, alpha) in ways.items():
            entry["insertion"][way] = insertion_effect(
                generator, layer, segmenter, number, chosen, values, ids[: args.insert_samples],
                region_chooser(number, np.random.default_rng(0), grid), min_pixels=args.min_pixels, alpha=alpha)
        report[name] = entry
    at8 = {n: e["ablation_removed"]["8%"] for n, e in report.items() if "ablation_removed" in e}
    print(json.dumps({
        "benchmark": "paint_efficacy", "model": args.model, "layer": layer, "units": units,
        "samples": args.samples, "first_id": args.first, "min_pixels": args.min_pixels,
        "concepts_with_50pct_removed_at_8pct": sorted(n for n, r in at8.items() if r >= 0.5),
        "seconds": round(time.perf_counter() - start, 1), "concepts": report,
    }, indent=2))


if __name__ == "__main__":
    main()
