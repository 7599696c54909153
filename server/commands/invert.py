"""``ganpaint invert PICTURE... --out DIR``: pictures into a generator, for batch work.

Each picture is decoded as the server decodes uploads (PNG or JPEG, centre-cropped, resized to the
model), encoded, refined and adapted (``models.inversion``). Per picture ``DIR/<stem>/`` holds
``picture.png``, the reconstructions ``encoded.png``, ``refined.png``, ``adapted.png``, the activations
and maps ``inverted.safetensors`` (keys ``r`` and ``scale.<layer>``) and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from tqdm import tqdm

from models.proggan import ProgressiveGenerator
from models.zoo import DEFAULT_GENERATOR, ZooError
from server.commands import Command, CommandError
from server.devices import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pictures", nargs="+", type=Path, help="PNG or JPEG files")
    parser.add_argument("--out", type=Path, required=True, help="output directory (one folder per picture)")
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help=f"zoo id or generator checkpoint; default {DEFAULT_GENERATOR}")
    parser.add_argument("--encoder", help="zoo id or encoder weights (default: the model's: <model>/encoder in the "
                                          "zoo, <stem>.encoder.safetensors beside a checkpoint)")
    parser.add_argument("--refine-steps", type=int, default=100, help="Adam steps on the edit layer (default 100)")
    parser.add_argument("--adapt-steps", type=int, default=300, help="Adam steps of the adaptation maps (default 300)")
    parser.add_argument("--layer", default="layer4", help="the edit layer (default layer4)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _encoder(args: argparse.Namespace, generator: ProgressiveGenerator, device: str) -> torch.nn.Module:
    from models.encoder import load_encoder_file
    from models.zoo import load_model, resolve_weights

    spec = args.encoder
    if spec is None:
        model_path = Path(args.model)
        if model_path.is_file():
            candidate = model_path.with_name(f"{model_path.stem}.encoder.safetensors")
            if not candidate.is_file():
                raise CommandError(f"no encoder beside {model_path} ({candidate.name}); train one with "
                                   f"`ganpaint train encoder --model {model_path}` or pass --encoder")
            return load_encoder_file(candidate, generator, args.layer, device)
        spec = f"{args.model}/encoder"
    if Path(spec).is_file():
        return load_encoder_file(Path(spec), generator, args.layer, device)
    try:
        return load_model(spec, device)
    except ZooError as exc:
        try:
            return load_encoder_file(resolve_weights(spec), generator, args.layer, device)
        except ZooError:
            raise CommandError(f"{exc}; train one with `ganpaint train encoder --model {args.model}`") from None


def run(args: argparse.Namespace) -> int:
    from models.checkpoints import CheckpointError, load_generator
    from models.imaging import to_png_bytes
    from models.inversion import FeatureLoss, invert
    from models.zoo import load_model, resolve_weights
    from server.api.errors import ApiError
    from server.pictures import decode_upload

    if args.refine_steps < 0 or args.adapt_steps < 0:
        raise CommandError("--refine-steps and --adapt-steps must be at least 0")
    try:
        device = str(resolve_device(args.device))
        generator = load_generator(resolve_weights(args.model), device=device)
        encoder = _encoder(args, generator, device)
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if args.layer not in generator.layer_names:
        raise CommandError(f"{args.model} has no layer {args.layer!r}")
    for p in generator.parameters():
        p.requires_grad_(False)
    try:
        feature_loss = FeatureLoss.from_classifier(load_model(f"{args.model}/classifier", device))
    except (ZooError, CheckpointError):
        feature_loss = None  # pixels only
    args.out.mkdir(parents=True, exist_ok=True)
    total = len(args.pictures) * max(args.refine_steps + args.adapt_steps, 1)
    bar = tqdm(total=total, unit="step", disable=args.no_progress, desc="invert")
    reports = []
    try:
        for index, path in enumerate(args.pictures):
            try:
                pixels = decode_upload(path.read_bytes(), generator.resolution)
            except OSError as exc:
                raise CommandError(f"{path}: {exc.strerror or exc}") from exc
            except ApiError as exc:
                raise CommandError(f"{path}: {exc.message}") from exc
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)[:64] or f"picture{index}"
            folder = args.out / stem
            folder.mkdir(exist_ok=True)
            done = [0]

            def progress(stage: str, fraction: float) -> None:
                step = round(fraction * max(args.refine_steps + args.adapt_steps, 1))
                bar.update(step - done[0])
                done[0] = step
                bar.set_postfix_str(f"{path.name}: {stage}")

            result = invert(generator, args.layer, encoder, pixels, args.refine_steps, args.adapt_steps,
                            feature_loss, progress)
            (folder / "picture.png").write_bytes(to_png_bytes(pixels))
            for name, image in result.images.items():
                (folder / f"{name}.png").write_bytes(to_png_bytes(image))
            from safetensors.torch import save_file

            save_file({"r": result.refined.cpu().contiguous(), **result.adaptation.state_dict()},
                      str(folder / "inverted.safetensors"), metadata={"layer": args.layer, "model": str(args.model)})
            report = {"picture": str(path), "out": str(folder), **result.report()}
            (folder / "report.json").write_text(json.dumps(report, indent=1))
            reports.append(report)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted after {len(reports)} of {len(args.pictures)} pictures") from None
    finally:
        bar.close()
    print(json.dumps({"pictures": reports}))
    return 0


COMMAND = Command(name="invert", help="pictures into a generator (encode, refine, adapt) for painting or study",
                  add_arguments=add_arguments, run=run)
