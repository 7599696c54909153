"""``ganpaint evaluate segmenter|classifier|gan``: measure zoo models; optionally record in their cards."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from models.checkpoints import CheckpointError
from models.zoo import DEFAULT_GENERATOR, ZOO_DIR, ZooError, companion_id, get_entry, load_model, model_world
from models.zoo.cards import hardware_description, read_card, write_card
from server.commands import Command, CommandError
from server.devices import resolve_device

QUICK_CAM_SAMPLES, QUICK_CAM_FAITHFULNESS = 40, 10
SLOW_CAM_METHODS = ("scorecam", "ablationcam")
FULL_CAM_SAMPLES, FULL_CAM_FAITHFULNESS = 500, 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("segmenter", "classifier", "gan", "cam"))
    parser.add_argument("--model", help="zoo id (default: the default generator, or its segmenter or classifier)")
    parser.add_argument("--segmenter", help="gan only: segmenter zoo id (default: the generator's own)")
    parser.add_argument("--classifier", help="gan only: classifier zoo id (default: the generator's own)")
    parser.add_argument("--count", type=int, help="held-out images (default 2000) or generated samples (default 5000)")
    parser.add_argument("--write-card", action="store_true", help="store the numbers in the model's card")
    parser.add_argument("--grid", type=Path, help="gan only: also save an 8x8 grid of samples 0..63 here")
    parser.add_argument("--samples", type=int,
                        help=f"cam only: held-out scenes (default {QUICK_CAM_SAMPLES}, about a minute on 2 CPU cores; "
                             f"--full: {FULL_CAM_SAMPLES})")
    parser.add_argument("--methods", nargs="+",
                        help="cam only: methods (default: all but scorecam and ablationcam; --full: all)")
    parser.add_argument("--faithfulness-samples", type=int,
                        help=f"cam only: scenes for deletion/insertion and drop/increase (default {QUICK_CAM_FAITHFULNESS}; "
                             f"--full: {FULL_CAM_FAITHFULNESS})")
    parser.add_argument("--full", action="store_true",
                        help="cam only: the full protocol of docs/cam-evaluation.md (about 17 minutes on 2 CPU cores)")
    parser.add_argument("--write-docs", type=Path, help="cam only: also write the table as Markdown here")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--zoo-dir", type=Path, default=ZOO_DIR, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from models import evaluate

    if args.what == "cam":
        return _cam(args)
    default_id = DEFAULT_GENERATOR if args.what == "gan" else companion_id(DEFAULT_GENERATOR, args.what, args.zoo_dir)
    model_id = args.model or default_id
    count = args.count or (5000 if args.what == "gan" else 2000)
    if not 10 <= count <= 100_000:
        raise CommandError("--count must be between 10 and 100000")
    try:
        device = str(resolve_device(args.device))
        model = load_model(model_id, device, args.zoo_dir)
        world = model_world(model_id, args.zoo_dir)
        if args.what == "segmenter":
            report = evaluate.segmenter_report(model, count, size=int(getattr(model, "input_size", 64)), device=device,
                                               world=world, progress=True)
        elif args.what == "classifier":
            report = evaluate.classifier_report(model, count, device=device, world=world, progress=True)
        else:
            segmenter = load_model(args.segmenter or companion_id(model_id, "segmenter", args.zoo_dir), device, args.zoo_dir)
            classifier = load_model(args.classifier or companion_id(model_id, "classifier", args.zoo_dir), device,
                                    args.zoo_dir)
            from tqdm import tqdm

            bar = tqdm(total=1, desc="evaluate gan", unit="img")

            def progress(stage: str, done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.set_description(f"evaluate gan ({stage})")
                bar.refresh()

            report = evaluate.generator_report(model, segmenter, classifier, count, device=device, world_name=world,
                                               progress=progress)
            bar.close()
            if args.grid:
                from PIL import Image

                from models.samples import z_tensor
                from models.train.gan import sample_grid

                args.grid.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(sample_grid(model, z_tensor(range(64), model.z_dim, device=device))).save(args.grid)
                report["grid"] = str(args.grid)
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    report["command"] = "ganpaint evaluate " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else [args.what])
    report["hardware"] = hardware_description()
    if args.write_card:
        entry = get_entry(model_id, args.zoo_dir)
        card_path = entry.weights.with_suffix(".json")  # generator.json, segmenter.json, judge.json, ...
        card = read_card(card_path)
        card["metrics"] = report
        write_card(card_path, card)
    print(json.dumps(report, indent=2))
    return 0


def _cam(args: argparse.Namespace) -> int:
    from dissect_core.cam import METHODS
    from dissect_core.cam_report import cam_report, cam_table_markdown

    # the quick run leaves out the two methods that run the model once per channel and image
    methods = args.methods or [m for m in METHODS if args.full or m not in SLOW_CAM_METHODS]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CommandError(f"unknown methods {unknown}; methods are {', '.join(METHODS)}")
    samples = args.samples or (FULL_CAM_SAMPLES if args.full else QUICK_CAM_SAMPLES)
    faithfulness = args.faithfulness_samples or (FULL_CAM_FAITHFULNESS if args.full else QUICK_CAM_FAITHFULNESS)
    if not 1 <= samples <= 100_000 or not 0 <= faithfulness <= samples:
        raise CommandError("--samples must be between 1 and 100000, --faithfulness-samples at most --samples")
    try:
        device = str(resolve_device(args.device))
        classifier = load_model(args.model or "world64/classifier", device, args.zoo_dir)
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    from tqdm import tqdm

    bar = tqdm(total=1, desc="evaluate cam", unit="img")

    def progress(stage: str, done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.set_description(f"evaluate cam ({stage})")
        bar.refresh()

    report = cam_report(classifier, methods, samples, faithfulness, device=device, progress=progress)
    bar.close()
    table = cam_table_markdown(report)
    report["command"] = "ganpaint evaluate " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else ["cam"])
    report["hardware"] = hardware_description()
    if args.write_docs:
        args.write_docs.parent.mkdir(parents=True, exist_ok=True)
        args.write_docs.write_text(
            "# CAM evaluation on the scene world\n\n" + table + "\n" + report["protocol"] + ".\n\n"
            f"Produced by `{report['command']}` on {report['hardware']}.\n")
    print(table)
    print(json.dumps(report, indent=2))
    return 0


COMMAND = Command(name="evaluate", help="measure zoo models on held-out world data (model card numbers)",
                  add_arguments=add_arguments, run=run)
