"""``ganpaint netdissect``: Network Dissection of a classifier on a Broden probe set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from dissect_core.datasets.broden import BrodenDataset, BrodenError
from dissect_core.heap import retain_freed_memory
from dissect_core.netdissect import NetDissectConfig, netdissect
from server.commands import Command, CommandError
from server.commands.explain_common import check_layers, load_classifier
from server.services import ensure_world_probe, write_netdissect_outputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="world64/classifier", help="zoo classifier id (default world64/classifier)")
    parser.add_argument("--layer", action="append", help="layer(s) to dissect (default: the model's CAM layer)")
    parser.add_argument("--probe", type=Path, help="Broden directory (default: the scene world's probe export)")
    parser.add_argument("--samples", type=int, default=1000, help="probe images used (default 1000)")
    parser.add_argument("--quantile", type=float, default=0.005, help="top fraction defining unit masks (0.005)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strips", type=int, default=10, help="units with example strips in the report (default 10)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    model, _ = load_classifier(args.model, args.device)
    layers = args.layer or [getattr(model, "target_layer", None) or "features"]
    check_layers(model, layers)
    if not 1 <= args.samples <= 1_000_000:
        raise CommandError("--samples must be between 1 and 1000000")
    retain_freed_memory()  # batch work: freed blocks stay for the next batch (dissect_core/heap.py)
    try:
        probe = BrodenDataset(args.probe or ensure_world_probe(args.samples))
    except BrodenError as exc:
        raise CommandError(str(exc)) from exc
    bar = tqdm(total=1, desc="netdissect", unit="batch", disable=args.no_progress)

    def progress(stage: str, done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.set_description(f"netdissect ({stage})")
        bar.refresh()

    tables = netdissect(model, layers, probe, NetDissectConfig(quantile=args.quantile, limit=args.samples), progress)
    bar.close()
    summary = {layer: write_netdissect_outputs(model, table, probe, args.out / layer.replace("/", "_"), args.strips)
               for layer, table in tables.items()}
    print(json.dumps({"out": str(args.out), "layers": summary}))
    return 0


COMMAND = Command(name="netdissect", help="Network Dissection of a classifier on a Broden probe set (world by default)",
                  add_arguments=add_arguments, run=run)
