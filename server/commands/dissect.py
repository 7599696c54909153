"""``ganpaint dissect``: dissect generator layers, rank units causally, write tables and reports.

Under ``torchrun --nproc-per-node=K`` each process takes every K-th sample and the statistics are
all-reduced (gloo on CPU, NCCL on GPU); rank 0 writes the same files one process would.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from dissect_core.build import build_layer_tables, causal_ids
from dissect_core.gandissect import DissectConfig, interpretable_fraction
from dissect_core.heap import retain_freed_memory
from dissect_core.report import write_layer_report
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import save_table
from models.checkpoints import CheckpointError, file_sha256, load_generator
from models.zoo import DEFAULT_GENERATOR, ZooError, companion_id, list_zoo, resolve_weights
from server.commands import Command, CommandError
from server.devices import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help=f"zoo id or checkpoint path (default {DEFAULT_GENERATOR})")
    parser.add_argument("--layer", action="append", required=True, help="layer to dissect, repeatable (e.g. layer4)")
    parser.add_argument("--samples", type=int, default=2000, help="generated samples (default 2000)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (one sub-directory per layer)")
    parser.add_argument("--segmenter",
                        help="zoo id, or package.module:factory for your own segmenter (see docs/dissection.md); "
                             "default: the zoo model's own segmenter (trained on its world), else the default model's")
    parser.add_argument("--seed", type=int, default=1, help="z stream seed (default 1, the GANPaint ids)")
    parser.add_argument("--first", type=int, default=0, help="first sample id (default 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quantile", type=float, default=0.01, help="top fraction defining unit masks (default 0.01)")
    parser.add_argument("--threshold", choices=["quantile", "iqr"], default=DissectConfig.threshold,
                        help="unit levels: each unit's most informative level (information quality ratio, "
                             "gandissect's GAN mode; the default) or a fixed top --quantile")
    parser.add_argument("--causal-samples", type=int,
                        help="samples for the causal ranking: every unit is ablated on each, so it costs units x "
                             "samples generator runs (default: samples / 16, between 8 and 64; 0 skips it)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report and image strips")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def _init_distributed(device: torch.device) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.samples <= 1_000_000:
        raise CommandError("--samples must be between 1 and 1000000")
    if not 0 < args.quantile < 0.5:
        raise CommandError("--quantile must be between 0 and 0.5")
    retain_freed_memory()  # batch work: freed blocks stay for the next batch (dissect_core/heap.py)
    try:
        device = resolve_device(args.device)
        weights = resolve_weights(args.model)
        generator = load_generator(weights, device=device)
        unknown = [layer for layer in args.layer if layer not in generator.layer_names]
        if unknown:
            raise CommandError(f"unknown layer(s) {unknown}; layers are {', '.join(generator.layer_names)}")
        if args.segmenter is None:
            args.segmenter = companion_id(args.model if args.model in list_zoo() else DEFAULT_GENERATOR, "segmenter")
        segmenter = load_segmenter(args.segmenter, str(device))
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    rank, world = _init_distributed(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        generator.to(device)
    config = DissectConfig(samples=args.samples, seed=args.seed, first=args.first, batch_size=args.batch_size,
                           quantile=args.quantile, threshold=args.threshold)
    bar = tqdm(total=1000, disable=args.no_progress or rank != 0, desc="dissect", unit="‰")

    def progress(stage: str, fraction: float) -> None:
        bar.set_description(f"dissect ({stage})")
        bar.n = int(fraction * 1000)
        bar.refresh()

    if args.causal_samples is None:
        args.causal_samples = min(64, max(8, args.samples // 16))
    causal = args.causal_samples if rank == 0 else 0  # the ranking runs in one process, after the merge
    tables = build_layer_tables(generator, args.layer, segmenter, config, causal, progress)
    bar.close()
    summary = {}
    provenance = {"model": args.model, "model_sha256": file_sha256(weights), "segmenter": args.segmenter,
                  "processes": world}
    if causal:
        ids = causal_ids(config, causal)
        provenance["causal_samples"] = {"first": ids[0], "count": len(ids)}
    for layer, table in tables.items():
        if rank == 0:
            save_table(table, args.out / layer, provenance)
            if not args.no_report:
                write_layer_report(generator, table, args.out / layer)
            summary[layer] = {"units": table.units, "interpretable_fraction": interpretable_fraction(table),
                              "detectors_per_category": table.detectors_per_category()}
    if rank == 0:
        print(json.dumps({"out": str(args.out), "layers": summary}))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


COMMAND = Command(name="dissect", help="dissect generator layers: unit-to-concept tables, causal rankings, reports",
                  add_arguments=add_arguments, run=run)
