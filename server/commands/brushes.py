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
from tqdm import tqdm

from dissect_core.insertion import (
    InsertionConfig,
    best_single_unit,
    learn_insertion,
    score_brush,
    smallest_drawing_set,
    unit_brush,
)
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
    parser.add_argument("--l2", type=float, default=InsertionConfig.l2,
                        help=f"L2 penalty on the weights ({InsertionConfig.l2}; gandissect's 0.005 is for 256-unit layers)")
    parser.add_argument("--out-of-context", type=float, default=InsertionConfig.out_of_context_weight,
                        help="weight of the term that keeps a brush from drawing out of context (1.0; 0: off)")
    parser.add_argument("--start", choices=("mean", "units"), default="mean",
                        help="mean: every unit at 0.5 writing the concept's mean feature (default); units: "
                             "gandissect's top units of the concept fully on at 2 x q99, the rest off")
    parser.add_argument("--lr", type=float, default=InsertionConfig.lr, help=f"Adam step ({InsertionConfig.lr})")
    parser.add_argument("--fixed-vector", action="store_true",
                        help="learn only the weights; write the concept's mean feature (gandissect's rule)")
    parser.add_argument("--validation-samples", type=int, default=100,
                        help="held-out samples on which the learned brush and the top-unit brush are compared (100)")
    parser.add_argument("--gallery-samples", type=int, default=48, help="samples to rank single units on (48)")
    parser.add_argument("--no-gallery", action="store_true", help="skip the single-unit gallery")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if (not 8 <= args.samples <= 100_000 or not 0 <= args.steps <= 10_000 or not 4 <= args.gallery_samples <= 10_000
            or not 4 <= args.validation_samples <= 10_000):
        raise CommandError("--samples must be 8..100000, --steps 0..10000, --gallery-samples and "
                           "--validation-samples 4..10000")
    if not 0 < args.lr <= 1 or not 0 <= args.l2 <= 10 or not 0 <= args.out_of_context <= 100:
        raise CommandError("--lr must be in (0, 1], --l2 in [0, 10], --out-of-context in [0, 100]")
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
    if args.steps > 0:
        for name in ("insertion_alpha", "insertion_value"):
            if getattr(table, name) is None:
                setattr(table, name, np.zeros((len(table.labels), table.units), np.float32))
    config = InsertionConfig(samples=args.samples, first=args.first, steps=args.steps, l2=args.l2, lr=args.lr,
                             out_of_context_weight=args.out_of_context, learn_value=not args.fixed_vector)
    summary: dict[str, dict] = {}
    started = time.monotonic()
    for concept in concepts:
        number = table.label_number(concept)
        value = table.concept_feature(concept)
        if value is None:
            summary[concept] = {"skipped": "no insertion vector (the concept never covers half a cell)"}
            continue
        channel = list(segmenter.categories).index(table.labels[number][1])
        segment = lambda images, c=channel: segmenter(images)[:, c]
        bar = tqdm(total=args.steps, desc=f"learn {concept}", disable=args.no_progress)

        def progress(stage: str, done: int, total: int, bar=bar) -> None:
            if stage == "learn":
                bar.n = done
                bar.refresh()

        entry: dict = {}
        learned: list[int] = []
        if args.steps > 0:
            init = None
            if args.start == "units":
                init, value = unit_brush(table.concept_ranking(concept), table.q99, value)
            try:
                result = learn_insertion(generator, table.layer, segment, segmenter.concept_probability, number,
                                         len(table.labels), value, config, init=init, progress=progress)
            except ValueError as exc:
                bar.close()
                summary[concept] = {"skipped": str(exc)}
                continue
            # keep the learned brush or gandissect's top units, whichever draws more in context than out
            units = unit_brush(table.concept_ranking(concept), table.q99, result.value)
            first = args.first + args.samples + args.gallery_samples
            learned_score, units_score = score_brush(
                generator, table.layer, segment, number, len(table.labels), [(result.alpha, result.value), units],
                range(first, first + args.validation_samples), seed=config.seed, region=config.region)
            chosen = "learned" if learned_score.margin >= units_score.margin else "top_units"
            alpha, vector = (result.alpha, result.value) if chosen == "learned" else units
            assert table.insertion_alpha is not None and table.insertion_value is not None  # made above
            table.insertion_alpha[number] = alpha
            table.insertion_value[number] = vector
            learned = [int(u) for u in np.argsort(-alpha)[:6]]
            entry = {"brush": chosen,
                     "validation": {name: {"in_context": round(sc.in_context, 4), "out_of_context": round(sc.out_of_context, 4),
                                           "regions": list(sc.regions)}
                                    for name, sc in (("learned", learned_score), ("top_units", units_score))},
                     "units_written": int((alpha >= 0.01).sum()), "weight_sum": round(float(alpha.sum()), 3),
                     "restore_regions": result.restore_regions, "context_regions": result.context_regions,
                     "out_of_context_regions": result.out_of_context_regions,
                     "final_loss": round(result.history[-1]["loss"], 4)}
        bar.close()
        if not args.no_gallery:
            candidates = list(dict.fromkeys(learned + table.concept_ranking(concept)[:12 - len(learned)]))
            ids = range(args.first + args.samples, args.first + args.samples + args.gallery_samples)
            best = best_single_unit(generator, table.layer, segment, number, candidates, table.q99, ids)
            gallery: dict = {**asdict(best), "cell": list(best.cell)} if best is not None else {}
            brush = None
            if table.insertion_alpha is not None and table.insertion_value is not None and table.insertion_alpha[number].any():
                brush = (table.insertion_alpha[number], table.insertion_value[number])
            ranked = ([int(u) for u in np.argsort(-brush[0], kind="stable")] if brush is not None
                      else list(table.concept_ranking(concept)))
            found = smallest_drawing_set(generator, table.layer, segment, number, len(table.labels), ranked, table.q99,
                                         ids, brush=brush)
            if found is not None:
                gallery["set"] = {**asdict(found), "cell": list(found.cell), "tried": {str(k): v for k, v in found.tried.items()}}
            if gallery:
                table.gallery[concept] = gallery
                entry["gallery"] = gallery
        summary[concept] = entry
    provenance = _provenance(table_dir)
    if args.steps > 0:  # per concept: a later run for some concepts keeps the others' record
        learned_now = {c: {**asdict(config), "start": args.start, "brush": e["brush"],
                           "command": "ganpaint brushes " + " ".join(_argv(args))}
                       for c, e in summary.items() if "skipped" not in e}
        earlier = provenance.get("insertion", {})
        earlier = {} if "steps" in earlier else earlier  # the older single-record form
        provenance["insertion"] = {**earlier, **learned_now}
    if not args.no_gallery:
        provenance["gallery"] = {"samples": args.gallery_samples, "first": args.first + args.samples,
                                 "command": "ganpaint brushes " + " ".join(_argv(args))}
    save_table(table, table_dir, provenance)
    print(json.dumps({"table": str(table_dir), "seconds": round(time.monotonic() - started, 1), "concepts": summary},
                     indent=1))
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    out = ["--model", str(args.model), "--samples", str(args.samples), "--first", str(args.first), "--steps", str(args.steps),
           "--l2", str(args.l2), "--lr", str(args.lr), "--out-of-context", str(args.out_of_context), "--start", args.start]
    out += ["--fixed-vector"] if args.fixed_vector else []
    return out + (["--concepts", *args.concepts] if args.concepts else [])


def _provenance(table_dir: Path) -> dict:
    try:
        return json.loads((table_dir / "table.json").read_text()).get("provenance", {})
    except (OSError, ValueError):
        return {}


COMMAND = Command(name="brushes", help="learn the brushes' insertion weights and the single-unit gallery of a table",
                  add_arguments=add_arguments, run=run)
