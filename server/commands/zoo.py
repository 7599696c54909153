"""``ganpaint zoo list|export|fetch-segmenter``: list zoo models; turn a finished training run into a zoo entry;
fetch a real-scene segmenter into the local Hugging Face cache (the one command that downloads)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import cast

import torch

from models.checkpoints import file_sha256, read_weights, save_weights
from models.zoo import ZOO_DIR, list_zoo, model_world
from models.zoo.cards import hardware_description, write_card
from server.commands import Command, CommandError

_KINDS = {"gan": "generator", "segmenter": "segmenter", "classifier": "classifier", "encoder": "encoder"}
_SUMMARY = {
    "generator": "Progressive GAN trained on the procedural scene world; the embedded default model to paint with.",
    "segmenter": "U-Net labelling scene-world objects and materials per pixel (colour names are computed); "
                 "labels generated images for dissection and measures edits.",
    "classifier": "Scene classifier (conv -> global average pooling -> linear) for CAM and Network Dissection.",
    "judge": "Independent judge: a dilated residual segmenter (not a U-Net) trained on the world's judge split; "
             "only judges paint benches, never learns brushes or dissects.",
    "encoder": "Encoder from pictures to the generator's edit layer (a small ResNet, 1x1 head + LeakyReLU 0.2), "
               "trained on generated pairs; the first step of editing an uploaded picture.",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "export", "fetch-segmenter"))
    parser.add_argument("recipe", nargs="?", metavar="RECIPE|MODEL_ID",
                        help=f"for export: which run kind ({', '.join(_KINDS)}); for fetch-segmenter: a Hugging Face "
                             "model id (e.g. nvidia/segformer-b4-finetuned-ade-512-512)")
    parser.add_argument("--cache-dir", type=Path,
                        help="fetch-segmenter only: Hugging Face cache to fill (default: HF_HOME's hub cache, "
                             "the one hf:<id> reads)")
    parser.add_argument("--run-dir", type=Path, help="for export: the training run directory")
    parser.add_argument("--name", default="world64", help="zoo model name (default world64)")
    parser.add_argument("--zoo-dir", type=Path, default=ZOO_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="storage precision of floating-point weights (default float16)")
    parser.add_argument("--no-snapshots", action="store_true",
                        help="gan only: leave the run's training snapshots out of the zoo (they feed `ganpaint "
                             "dynamics`; each is as large as the generator)")
    parser.add_argument("--from-checkpoint", action="store_true",
                        help="gan only: export the EMA generator of checkpoint.pt (run not finished)")


def _training_seconds(run_dir: Path) -> float | None:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return None
    times = [json.loads(line)["time"] for line in log.read_text().splitlines() if line.strip()]
    # sum of intervals, ignoring pauses longer than 10 minutes between resumed sessions
    return float(sum(b - a for a, b in zip(times, times[1:]) if b - a < 600)) if len(times) > 1 else None


def _encoder_card(config: dict, state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """An encoder's architecture (rebuilt from its generator) and its scores on 100 held-out samples."""
    from models.checkpoints import load_generator
    from models.encoder import LayerEncoder
    from models.evaluate import encoder_report
    from models.zoo import resolve_weights

    generator = load_generator(resolve_weights(config["model"]))
    channels, size, _ = generator.layer_shape(config["layer"])
    encoder = LayerEncoder(channels, size, generator.resolution, config["width"])
    encoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    architecture = {**encoder.architecture(), "generator": config["model"], "layer": config["layer"]}
    return architecture, encoder_report(encoder.eval(), generator, config["layer"])


def _export(args: argparse.Namespace) -> dict:
    if not args.recipe or not args.run_dir:
        raise CommandError("export needs RECIPE and --run-dir")
    if args.recipe not in _KINDS:
        raise CommandError(f"unknown recipe {args.recipe!r}; one of {', '.join(_KINDS)}")
    run_dir: Path = args.run_dir
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise CommandError(f"{run_dir}: no config.json; not a training run directory")
    config = json.loads(config_path.read_text())
    kind = _KINDS[args.recipe]
    dtype = getattr(torch, args.dtype)
    world = config.get("world", "classic")
    out_dir = args.zoo_dir / args.name
    out_dir.mkdir(parents=True, exist_ok=True)

    extra: dict = {}
    snapshot_files: list[str] = []
    state: dict[str, torch.Tensor]
    if kind == "generator":
        if args.from_checkpoint:
            from models.train.gan import GrowingGenerator, snapshot_state

            saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
            growing = GrowingGenerator(config["channels"])
            growing.load_state_dict(saved["ema"])
            state = snapshot_state(growing, config["resolution"])
            extra["images_seen"] = int(saved["images_seen"])
        else:
            source = run_dir / "generator.safetensors"
            if not source.exists():
                raise CommandError(f"{source} is missing: the run has not finished (use --from-checkpoint)")
            state = cast(dict[str, torch.Tensor], read_weights(source))  # safetensors: tensors only
        snap_out = out_dir / "snapshots"
        if snap_out.exists():
            shutil.rmtree(snap_out)
        snapshots = [] if args.no_snapshots else sorted((run_dir / "snapshots").glob("*.safetensors"))
        if snapshots:
            snap_out.mkdir()
            for snap in snapshots:
                shutil.copy2(snap, snap_out / snap.name)
        snapshot_files = [f"snapshots/{s.name}" for s in snapshots]
        sizes = config["channels"]
        architecture = {"class": "models.proggan.ProgressiveGenerator", "sizes": sizes,
                        "resolution": config["resolution"], "z_dim": sizes[0],
                        "edit_layer": "layer4", "parameters": sum(v.numel() for v in state.values())}
        file_name = "generator.safetensors"
        model_id = args.name
    elif kind == "encoder":
        source = run_dir / "model.safetensors"
        if not source.exists():
            raise CommandError(f"{source} is missing: the run has not finished")
        state = cast(dict[str, torch.Tensor], read_weights(source))  # safetensors: tensors only
        architecture, metrics = _encoder_card(config, state)
        extra["metrics"] = metrics
        file_name = "encoder.safetensors"
        model_id = f"{args.name}/encoder"
    else:
        source = run_dir / "model.safetensors"
        if not source.exists():
            raise CommandError(f"{source} is missing: the run has not finished")
        state = cast(dict[str, torch.Tensor], read_weights(source))  # safetensors: tensors only
        cls = "models.segmenter.WorldSegmenter" if kind == "segmenter" else "models.classifier.SceneClassifier"
        component = kind
        if kind == "segmenter" and config.get("architecture") == "judge":
            cls, component = "models.judge.JudgeSegmenter", "judge"
        architecture = {"class": cls, "width": config["width"], "input": config["resolution"],
                        "parameters": sum(v.numel() for v in state.values() if v.is_floating_point())}
        if kind == "classifier":
            architecture["cam_target_layer"] = "features.block4"
        file_name = f"{component}.safetensors"
        model_id = f"{args.name}/{component}"

    split = config.get("split", "train")
    if kind == "encoder":
        data = {"world": f"pictures generated by {config['model']} (fresh z every batch)",
                "images": config["steps"] * config["batch_size"], "size": architecture["input"]}
        world = model_world(config["model"]) if not Path(config["model"]).suffix else world
    else:
        data = {"world": f"scene world ({world}), {split} split", "images": config["dataset_size"],
                "size": config["resolution"]}
    metrics = extra.pop("metrics", {})
    stored = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    weights = save_weights(stored, out_dir / file_name)
    command = f"ganpaint train {args.recipe} --run-dir {run_dir.name}"
    if kind == "encoder":
        command = f"ganpaint train encoder --model {config['model']} --run-dir {run_dir.name} --set width={config['width']}"
    card = {
        "id": model_id, "kind": kind, "file": file_name, "dtype": args.dtype,
        "bytes": weights.stat().st_size, "sha256": file_sha256(weights), "summary": _SUMMARY[Path(file_name).stem],
        "architecture": architecture,
        "training": {"command": command, "config": config, "seconds": _training_seconds(run_dir),
                     "hardware": hardware_description(), **extra},
        "data": data,
        "world": world,
        "metrics": metrics,
    }
    if kind == "generator":  # the segmenter and classifier trained on the same world
        card["companions"] = {"segmenter": f"{args.name}/segmenter", "classifier": f"{args.name}/classifier"}
    if snapshot_files:
        card["snapshots"] = snapshot_files
    write_card(out_dir / f"{Path(file_name).stem}.json", card)
    return {"id": model_id, "weights": str(weights), "bytes": card["bytes"], "sha256": card["sha256"]}


def _fetch_segmenter(args: argparse.Namespace) -> dict:
    from dissect_core.hf_segmenter import BRUSH_CONCEPTS, fetch_segmenter, load_hf_segmenter

    if not args.recipe:
        raise CommandError("fetch-segmenter needs a model id, e.g. nvidia/segformer-b4-finetuned-ade-512-512")
    try:
        path = fetch_segmenter(args.recipe, str(args.cache_dir) if args.cache_dir else None)
        segmenter = load_hf_segmenter(str(path))  # proves it loads offline, names its labels
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:  # network, unknown repository, disk
        raise CommandError(f"could not fetch {args.recipe}: {str(exc).splitlines()[0]}") from exc
    brushes = sorted({name for name, _ in segmenter.labels[1:]} & set(BRUSH_CONCEPTS.values()))
    return {"id": args.recipe, "path": str(path), "use": f"--segmenter hf:{args.recipe}",
            "labels": len(segmenter.labels) - 1, "brush_concepts": brushes}


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        entries = list_zoo(args.zoo_dir)
        print(json.dumps([{"id": e.id, "kind": e.kind, "file": str(e.weights), "bytes": e.weights.stat().st_size
                           if e.weights.exists() else None} for e in entries.values()], indent=2))
        return 0
    if args.action == "fetch-segmenter":
        print(json.dumps(_fetch_segmenter(args)))
        return 0
    print(json.dumps(_export(args)))
    return 0


COMMAND = Command(name="zoo", help="list the model zoo, export a training run into it, or fetch a real-scene segmenter",
                  add_arguments=add_arguments, run=run)
