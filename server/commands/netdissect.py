"""``ganpaint netdissect``: Network Dissection of a classifier on a Broden probe set."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

from tqdm import tqdm

from dissect_core.datasets.broden import BrodenDataset, BrodenError
from dissect_core.netdissect import NetDissectConfig, NetDissectTable, class_drivers, netdissect, tally_csv, unique_detectors
from dissect_core.topk import TopK, write_strips
from server.commands import Command, CommandError
from server.commands.explain_common import check_layers, ensure_world_probe, load_classifier


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


def write_outputs(model, table: NetDissectTable, probe: BrodenDataset, out: Path, strips: int) -> dict:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    (out / "tally.csv").write_text(tally_csv(table))
    units = []
    for unit in range(table.units):
        label, category, iou = table.unit_label(unit)
        units.append({"unit": unit, "label": label, "category": category, "iou": iou,
                      "interpretable": iou > table.config.min_iou, "level": float(table.level[unit]),
                      "top_images": [int(i) for i in table.top_images[unit]],
                      "drives": [{"class": getattr(model, "class_names", [])[c] if c < len(getattr(model, "class_names", [])) else c,
                                  "weight": w} for c, w in class_drivers(model, unit)]})
    detectors = unique_detectors(table)
    document = {"layer": table.layer, "images": table.images, "quantile": table.config.quantile,
                "min_iou": table.config.min_iou, "interpretable": sum(u["interpretable"] for u in units),
                "unique_detectors": detectors, "unique_detectors_rule": "per category: distinct labels among units whose "
                "best IoU within that category exceeds min_iou (NetDissect's plot rule)",
                "unique_detectors_top_label": unique_detectors(table, rule="top"), "units": units}
    (out / "netdissect.json").write_text(json.dumps(document, indent=1))
    ranked = sorted(units, key=lambda u: -u["iou"])
    images = [probe[i][0] for i in range(table.images)]
    top = TopK(table.layer, table.level, table.top_images, table.top_images.astype(float))
    write_strips(model, top, images, out / "image", [u["unit"] for u in ranked[:strips]], count=8)
    rows = "".join(
        f"<tr{'' if u['interpretable'] else ' class=low'}><td>{u['unit']}</td><td>{html.escape(u['label'])}</td>"
        f"<td>{u['category']}</td><td>{u['iou']:.3f}</td><td>{', '.join(str(d['class']) for d in u['drives'])}</td>"
        + (f"<td><img src='image/unit{u['unit']:04d}.png' alt='unit {u['unit']}'></td>" if i < strips else "<td></td>")
        + "</tr>" for i, u in enumerate(ranked))
    counts = ", ".join(f"{c}: {v['count']}" for c, v in detectors.items())
    (out / "report.html").write_text(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{table.layer} network dissection</title>"
        "<style>body{font-family:sans-serif} td{padding:2px 6px} tr.low{opacity:.45} img{height:64px;image-rendering:pixelated}</style>"
        f"<h1>{html.escape(table.layer)}: {document['interpretable']}/{table.units} units with IoU &gt; {table.config.min_iou}</h1>"
        f"<p>{table.images} probe images; unique detectors per category: {counts}</p>"
        f"<table><tr><th>unit</th><th>label</th><th>category</th><th>IoU</th><th>drives classes</th><th>top images</th></tr>{rows}</table>")
    return {"interpretable": document["interpretable"], "units": table.units, "unique_detectors":
            {c: v["count"] for c, v in detectors.items()}}


def run(args: argparse.Namespace) -> int:
    model, _ = load_classifier(args.model, args.device)
    layers = args.layer or [getattr(model, "target_layer", None) or "features"]
    check_layers(model, layers)
    if not 1 <= args.samples <= 1_000_000:
        raise CommandError("--samples must be between 1 and 1000000")
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
    summary = {layer: write_outputs(model, table, probe, args.out / layer.replace("/", "_"), args.strips)
               for layer, table in tables.items()}
    print(json.dumps({"out": str(args.out), "layers": summary}))
    return 0


COMMAND = Command(name="netdissect", help="Network Dissection of a classifier on a Broden probe set (world by default)",
                  add_arguments=add_arguments, run=run)
