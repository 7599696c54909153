"""``ganpaint topk``: each unit's top-activating images with their activation masks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from dissect_core.datasets.folder import ImageFolder
from dissect_core.topk import top_activating, write_strips
from server.commands import Command, CommandError
from server.commands.explain_common import check_layers, check_units, load_classifier
from server.services import world_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="world64/classifier")
    parser.add_argument("--layer", default="features.block4")
    parser.add_argument("--images", type=Path, help="folder of PNG/JPEG images (default: scene-world probe images)")
    parser.add_argument("--count", type=int, default=2000, help="images used (default 2000)")
    parser.add_argument("--k", type=int, default=12, help="top images per unit")
    parser.add_argument("--unit", type=int, action="append", help="only these units (default all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    model, _ = load_classifier(args.model, args.device)
    check_layers(model, [args.layer])
    check_units(model, args.layer, args.unit)
    if not 1 <= args.count <= 1_000_000 or not 1 <= args.k <= 100:
        raise CommandError("--count must be 1..1000000 and --k 1..100")
    try:
        source = ImageFolder(args.images, 64, args.count) if args.images else world_images(args.count)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    bar = tqdm(total=len(source), desc="topk", unit="img", disable=args.no_progress)
    result = top_activating(model, args.layer, source, args.k, progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    written = write_strips(model, result, source, args.out, args.unit, count=min(args.k, 8))
    print(json.dumps({"out": str(args.out), "strips": len(written), "layer": args.layer}))
    return 0


COMMAND = Command(name="topk", help="top-activating images per unit, with activation masks, as strips",
                  add_arguments=add_arguments, run=run)
