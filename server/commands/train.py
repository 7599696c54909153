"""``ganpaint train gan|segmenter|classifier|encoder``: the zoo's training recipes (resumable, seeded)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from models.train.common import TrainingCancelled, stop_signals
from server.commands import Command, CommandError
from server.devices import resolve_device

_RECIPES = ("gan", "segmenter", "classifier", "encoder")


def _config_class(recipe: str) -> type:
    if recipe == "gan":
        from models.train.gan import GanConfig

        return GanConfig
    if recipe == "segmenter":
        from models.train.segmenter import SegmenterConfig

        return SegmenterConfig
    if recipe == "encoder":
        from models.train.encoder import EncoderConfig

        return EncoderConfig
    from models.train.classifier import ClassifierConfig

    return ClassifierConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", choices=_RECIPES, help="what to train")
    parser.add_argument("--model", help="encoder only: the generator to encode for (zoo id or weight file; "
                        "the same as --set model=...)")
    parser.add_argument("--run-dir", type=Path, required=True, help="directory for checkpoints, logs and outputs")
    parser.add_argument("--config", type=Path, help="JSON file overriding recipe defaults (keys as in config.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one config value, e.g. --set resolution=32 --set 'channels=[64,64,64,32]'")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing run")
    parser.add_argument("--max-seconds", type=float, help="stop (checkpointed, resumable) after this much time")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_config(recipe: str, config_file: Path | None, overrides: list[str]) -> object:
    """Recipe defaults, then the JSON file, then ``--set`` values; unknown keys are errors."""
    cls = _config_class(recipe)
    names = {f.name for f in fields(cls)}
    values: dict[str, object] = {}
    if config_file is not None:
        try:
            loaded = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--config {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CommandError(f"--config {config_file}: expected a JSON object")
        values.update(loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CommandError(f"--set {item!r}: expected KEY=JSON")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    unknown = sorted(set(values) - names)
    if unknown:
        raise CommandError(f"unknown {recipe} config keys {unknown}; known: {sorted(names)}")
    return cls(**values)


def run(args: argparse.Namespace) -> int:
    if args.model is not None and args.recipe != "encoder":
        raise CommandError("--model is for `train encoder` (the generator it encodes for)")
    overrides = list(args.set) + ([f"model={json.dumps(args.model)}"] if args.model is not None else [])
    config = build_config(args.recipe, args.config, overrides)
    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    with stop_signals():
        return _train(args, config, device)


def _train(args: argparse.Namespace, config: object, device: str) -> int:
    try:
        if args.recipe == "gan":
            from models.train.gan import train_gan

            out = train_gan(config, args.run_dir, resume=not args.fresh, device=device,  # type: ignore[arg-type]
                            progress=not args.no_progress, max_seconds=args.max_seconds)
        elif args.recipe == "segmenter":
            from models.train.segmenter import train_segmenter

            out = train_segmenter(config, args.run_dir, resume=not args.fresh, device=device,  # type: ignore[arg-type]
                                  progress=not args.no_progress, max_seconds=args.max_seconds)
        elif args.recipe == "encoder":
            from models.train.encoder import train_encoder

            out = train_encoder(config, args.run_dir, resume=not args.fresh, device=device,  # type: ignore[arg-type]
                                progress=not args.no_progress, max_seconds=args.max_seconds)
        else:
            from models.train.classifier import train_classifier

            out = train_classifier(config, args.run_dir, resume=not args.fresh, device=device,  # type: ignore[arg-type]
                                   progress=not args.no_progress, max_seconds=args.max_seconds)
    except TrainingCancelled as exc:
        # a planned stop (--max-seconds) is a success; an interruption (Ctrl+C, SIGTERM) is not
        planned = args.max_seconds is not None and not exc.interrupted
        print(json.dumps({"status": "stopped", "message": str(exc), "run_dir": str(args.run_dir)}))
        return 0 if planned else 130
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps({"status": "done", "weights": str(out), "run_dir": str(args.run_dir)}))
    return 0


COMMAND = Command(name="train", help="train a zoo model (gan, segmenter, classifier, or the encoder of a generator) on the scene world",
                  add_arguments=add_arguments, run=run)
