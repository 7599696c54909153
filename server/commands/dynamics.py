"""``ganpaint dynamics``: dissect a zoo GAN's training snapshots -- interpretable units per category over training."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dissect_core.compare import detectors_markdown, detectors_svg
from dissect_core.gandissect import DissectConfig, dissect
from dissect_core.segmenters import load_segmenter
from models.checkpoints import load_generator
from models.zoo import ZooError, get_entry
from server.commands import Command, CommandError
from server.devices import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="world64", help="zoo generator with snapshots (default world64)")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--segmenter", default="world64/segmenter")
    parser.add_argument("--out", type=Path, required=True, help="directory for dynamics.md, .svg and .json")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    try:
        entry = get_entry(args.model)
        device = str(resolve_device(args.device))
        segmenter = load_segmenter(args.segmenter, device)
    except (ZooError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    files = [(f"snapshot {Path(s).stem}", entry.weights.parent / s) for s in entry.card.get("snapshots", [])]
    files.append(("final", entry.weights))
    rows = []
    for name, path in files:
        generator = load_generator(path, device=device)
        if args.layer not in generator.layer_names:
            continue
        table = dissect(generator, [args.layer], segmenter, DissectConfig(samples=args.samples))[args.layer]
        match = re.search(r"(\d+)img", path.name)
        rows.append({"name": name, "images_seen": int(match.group(1)) if match else None,
                     "resolution": generator.resolution, "units": table.units,
                     "interpretable": int((table.iou.max(1) > table.config.min_iou).sum()),
                     "detectors": table.detectors_per_category()})
        print(json.dumps(rows[-1]), flush=True)
    categories = ["object", "material", "color"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics.json").write_text(json.dumps(rows, indent=1))
    (args.out / "dynamics.svg").write_text(detectors_svg(rows, categories, f"{args.model} {args.layer}: detectors per category over training"))
    (args.out / "dynamics.md").write_text(
        f"# Training dynamics of {args.model} {args.layer}\n\nInterpretable units (best IoU > 0.04, one label per unit) "
        f"per category, dissecting {args.samples} samples of each snapshot (`ganpaint dynamics --samples {args.samples}`).\n\n"
        + detectors_markdown(rows, categories) + "\n![detectors per category over training](dynamics.svg)\n")
    return 0


COMMAND = Command(name="dynamics", help="dissect a zoo GAN's training snapshots (units per category over training)",
                  add_arguments=add_arguments, run=run)
