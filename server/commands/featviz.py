"""``ganpaint featviz``: activation maximisation images of classifier units."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from dissect_core.featviz import to_uint8_grid
from server.commands import Command, CommandError
from server.commands.explain_common import check_layers, check_units, load_classifier
from server.services import featviz_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="world64/classifier")
    parser.add_argument("--layer", default="features.block4")
    parser.add_argument("--unit", type=int, action="append", required=True, help="unit(s), optimised as one batch")
    parser.add_argument("--param", choices=("fft", "pixel", "gan"), default="fft",
                        help="fft (1/f spectrum, decorrelated colour), pixel, or gan (optimise the zoo GAN's z)")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--diversity", type=float, default=0.0, help="weight of a diversity term (same unit, batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="PNG file for the strip of images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    model, device = load_classifier(args.model, args.device)
    check_layers(model, [args.layer])
    check_units(model, args.layer, args.unit)
    if not 1 <= args.steps <= 10_000 or not 1 <= len(args.unit) <= 64:
        raise CommandError("--steps must be 1..10000 and at most 64 units")
    generator = None
    if args.param == "gan":
        from models.zoo import DEFAULT_GENERATOR, load_model

        generator = load_model(DEFAULT_GENERATOR, device)
    bar = tqdm(total=args.steps, desc="featviz", disable=args.no_progress)

    def progress(step: int, total: int, value: float) -> None:
        bar.n = step
        bar.set_postfix(objective=f"{value:.3f}")
        bar.refresh()

    result = featviz_images(model, args.layer, args.unit, args.param, args.steps, args.lr, args.seed, generator,
                            args.diversity, progress=progress)
    bar.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_grid(result.images)).save(args.out)
    print(json.dumps({"written": str(args.out), "units": args.unit, "start_objective": result.start_value,
                      "final_objective": result.final_value}))
    return 0


COMMAND = Command(name="featviz", help="feature visualisation (activation maximisation) of classifier units",
                  add_arguments=add_arguments, run=run)
