"""``ganpaint render``: generate sample images (and optionally dump a layer's activations)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dissect_core.nethook import Trace
from models.checkpoints import CheckpointError, load_generator
from models.imaging import to_uint8
from models.samples import MAX_SAMPLE_ID, z_tensor
from models.zoo import DEFAULT_GENERATOR, ZooError, resolve_weights
from server.commands import Command, CommandError
from server.devices import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=DEFAULT_GENERATOR,
        help=f"zoo id or path to a ProGAN checkpoint (.pth or .safetensors); default {DEFAULT_GENERATOR}",
    )
    parser.add_argument(
        "--sample", type=int, action="append", required=True, metavar="ID",
        help=f"sample id (0..{MAX_SAMPLE_ID}), repeatable; ids match the original GANPaint demo",
    )
    parser.add_argument(
        "--out", type=Path, required=True,
        help="output directory (created); or a .png file name when one sample is rendered",
    )
    parser.add_argument("--layer", help="layer whose activations --dump saves (e.g. layer4)")
    parser.add_argument("--dump", action="store_true", help="save the --layer activations as <stem>_<layer>.npy")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per forward pass (default 8)")


def _output_paths(out: Path, model_stem: str, ids: list[int]) -> list[Path]:
    if out.suffix.lower() == ".png":
        if len(ids) != 1:
            raise CommandError(f"--out {out} names one file but {len(ids)} samples were asked for; give a directory")
        return [out]
    return [out / f"{model_stem}_{sample_id}.png" for sample_id in ids]


def run(args: argparse.Namespace) -> int:
    ids: list[int] = args.sample
    for sample_id in ids:
        if not 0 <= sample_id <= MAX_SAMPLE_ID:
            raise CommandError(f"--sample {sample_id}: ids run from 0 to {MAX_SAMPLE_ID}")
    if args.dump and not args.layer:
        raise CommandError("--dump needs --layer NAME")
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    try:
        device = resolve_device(args.device)
        weights = resolve_weights(args.model)
        generator = load_generator(weights, device=device)
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if args.layer and args.layer not in generator.layer_names:
        raise CommandError(f"--layer {args.layer}: unknown layer; layers are {', '.join(generator.layer_names)}")

    stem = Path(args.model).stem if Path(args.model).is_file() else args.model.replace("/", "_")
    paths = _output_paths(args.out, stem, ids)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)

    written: list[str] = []
    for start in range(0, len(ids), args.batch_size):
        batch_ids = ids[start : start + args.batch_size]
        z = z_tensor(batch_ids, generator.z_dim, device=device)
        with torch.inference_mode():
            if args.layer:
                with Trace(generator, args.layer) as trace:
                    images = generator(z)
                features = trace[args.layer].float().cpu().numpy()
            else:
                images = generator(z)
        pixels = to_uint8(images)
        for offset in range(len(batch_ids)):
            path = paths[start + offset]
            Image.fromarray(pixels[offset]).save(path, format="PNG")
            written.append(str(path))
            if args.dump:
                npy = path.with_name(f"{path.stem}_{args.layer}.npy")
                np.save(npy, features[offset])
                written.append(str(npy))
    print(json.dumps({"model": args.model, "samples": ids, "written": written}))
    return 0


COMMAND = Command(
    name="render",
    help="render sample images of a generator to PNG (and dump layer activations)",
    add_arguments=add_arguments,
    run=run,
)
