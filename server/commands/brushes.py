"""``ganpaint brushes``: learn how each brush inserts its concept, and find the units that draw alone.

For every concept of a dissection table (default: the painter's object and material brushes that
have an insertion vector), learn GAN Dissection's per-unit insertion weights
(``dissect_core.insertion.learn_insertion``) on samples of their own id range, and find the single
unit that draws the concept most when switched on alone (the unit browser's gallery: "unit N
draws trees"). Both are written into the table, which the painter then uses.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dissect_core.insertion import InsertionConfig, best_single_unit, iou_init, learn_insertion
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import TableError, load_table, save_table
from models.checkpoints import CheckpointError, load_generator
from models.zoo import DEFAULT_GENERATOR, ZooError, companion_id, get_entry, list_zoo, resolve_weights
from server.commands import Command, CommandError
from server.devices import resolve_device

DEFAULT_CONCEPTS = ("tree", "grass", "dome", "door", "tower", "lamp", "window", "cloud", "brick", "stone", "building")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help="zoo id or checkpoint (default: the default model)")
    parser.add_argument("--table", type=Path,
                        help="layer directory of a dissection table (default: the zoo model's shipped layer4 table)")
    parser.add_argument("--segmenter", help="default: the model's own zoo segmenter")
    parser.add_argument("--concepts", nargs="+", help=f"default: {' '.join(DEFAULT_CONCEPTS)} (those in the table)")
    parser.add_argument("--samples", type=int, default=400, help="candidate images for training regions (400)")
    parser.add_argument("--first", type=int, default=20000, help="first sample id used for learning (20000)")
    parser.add_argument("--steps", type=int, default=150,
                        help="optimisation steps per concept (150; 0: keep the table's insertion, only the gallery)")
    parser.add_argument("--l2", type=float, default=0.005, help="L2 penalty on the weights (gandissect's 0.005)")
    parser.add_argument("--gallery-samples", type=int, default=48, help="samples to rank single units on (48)")
    parser.add_argument("--no-gallery", action="store_true", help="skip the single-unit gallery")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not 8 <= args.samples <= 100_000 or not 0 <= args.steps <= 10_000 or not 4 <= args.gallery_samples <= 10_000:
        raise CommandError("--samples must be 8..100000, --steps 0..10000, --gallery-samples 4..10000")
    if args.steps == 0 and args.no_gallery:
        raise CommandError("--steps 0 learns nothing and --no-gallery finds nothing: nothing to do")
    try:
        device = resolve_device(args.device)
        generator = load_generator(resolve_weights(args.model), device=device)
        table_dir = args.table or get_entry(args.model).weights.parent / "dissection" / "layer4"
        table = load_table(table_dir)
        zoo_model = args.model if args.model in list_zoo() else DEFAULT_GENERATOR
        segmenter = load_segmenter(args.segmenter or companion_id(zoo_model, "segmenter"), str(device))
    except (ZooError, CheckpointError, TableError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if not hasattr(segmenter, "concept_probability"):
        raise CommandError("the segmenter has no differentiable concept_probability; learned insertion needs one")
    names = {name for name, _ in table.labels[1:]}
    concepts = [c for c in (args.concepts or DEFAULT_CONCEPTS) if c in names]
    if args.concepts and len(concepts) != len(args.concepts):
        raise CommandError(f"not in the table: {sorted(set(args.concepts) - names)}")
    if table.insertion_alpha is None and args.steps > 0:
        table.insertion_alpha = np.zeros((len(table.labels), table.units), np.float32)
    config = InsertionConfig(samples=args.samples, first=args.first, steps=args.steps, l2=args.l2)
    summary: dict[str, dict] = {}
    started = time.monotonic()
    for concept in concepts:
        number = table.label_number(concept)
        value = table.concept_feature(concept)
        if value is None:
            summary[concept] = {"skipped": "no insertion vector (the concept never covers half a cell)"}
            continue
        channel = list(segmenter.categories).index(table.labels[number][1])
        segment = lambda images, c=channel: segmenter(images)[:, c]  # noqa: E731
        bar = tqdm(total=args.steps, desc=f"learn {concept}", disable=args.no_progress)

        def progress(stage: str, done: int, total: int, bar=bar) -> None:  # noqa: ANN001
            if stage == "learn":
                bar.n = done
                bar.refresh()

        entry: dict = {}
        learned: list[int] = []
        if args.steps > 0:
            try:
                result = learn_insertion(generator, table.layer, segment, segmenter.concept_probability, number,
                                         len(table.labels), value, config, init=iou_init(table.iou[:, number]),
                                         progress=progress)
            except ValueError as exc:
                bar.close()
                summary[concept] = {"skipped": str(exc)}
                continue
            table.insertion_alpha[number] = result.alpha
            learned = [int(u) for u in np.argsort(-result.alpha)[:6]]
            entry = {"units_written": int((result.alpha >= 0.01).sum()), "weight_sum": round(float(result.alpha.sum()), 3),
                     "restore_regions": result.restore_regions, "context_regions": result.context_regions,
                     "final_loss": round(result.history[-1]["loss"], 4)}
        bar.close()
        if not args.no_gallery:
            candidates = list(dict.fromkeys(learned + table.concept_ranking(concept)[:12 - len(learned)]))
            ids = range(args.first + args.samples, args.first + args.samples + args.gallery_samples)
            best = best_single_unit(generator, table.layer, segment, number, candidates, table.q99, ids)
            if best is not None:
                table.gallery[concept] = {**asdict(best), "cell": list(best.cell)}
                entry["gallery"] = table.gallery[concept]
        summary[concept] = entry
    provenance = _provenance(table_dir)
    if args.steps > 0:
        provenance["insertion"] = {**asdict(config), "concepts": [c for c, e in summary.items() if "skipped" not in e],
                                   "command": "ganpaint brushes " + " ".join(_argv(args))}
    if not args.no_gallery:
        provenance["gallery"] = {"samples": args.gallery_samples, "first": args.first + args.samples,
                                 "command": "ganpaint brushes " + " ".join(_argv(args))}
    save_table(table, table_dir, provenance)
    print(json.dumps({"table": str(table_dir), "seconds": round(time.monotonic() - started, 1), "concepts": summary},
                     indent=1))
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    out = ["--model", str(args.model), "--samples", str(args.samples), "--first", str(args.first), "--steps", str(args.steps)]
    return out + (["--concepts", *args.concepts] if args.concepts else [])


def _provenance(table_dir: Path) -> dict:
    try:
        return json.loads((table_dir / "table.json").read_text()).get("provenance", {})
    except (OSError, ValueError):
        return {}


COMMAND = Command(name="brushes", help="learn the brushes' insertion weights and the single-unit gallery of a table",
                  add_arguments=add_arguments, run=run)
