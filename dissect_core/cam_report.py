"""The CAM paper's localisation table on held-out scene-world images, with faithfulness metrics.

Lives beside the metrics (``cam_eval``) it combines; the world supplies images and key boxes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dissect_core.cam import make_method
from dissect_core.cam_eval import THRESHOLDS, deletion_insertion, drop_increase, localization_hits
from models.world import render_scene, world_seed

__all__ = ["cam_report", "cam_table_markdown"]


def cam_report(classifier: nn.Module, methods: list[str], count: int = 500, faithfulness_count: int = 100,
               size: int = 64, device: str = "cpu", batch: int = 50,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The CAM paper's localisation table (plus MaxBoxAcc and faithfulness) on held-out world scenes.

    Ground-truth boxes are the scene's key boxes: the church, each village house, each park tree
    and lamp, the lake and the mountains.
    """
    scenes = [render_scene(world_seed("heldout", i), size) for i in range(count)]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
    truth = torch.tensor([s.scene for s in scenes], device=device)
    boxes = [[b[1:5] for b in s.boxes if b[5]] for s in scenes]
    with torch.no_grad():
        predicted = torch.cat([classifier(chunk).argmax(1) for chunk in images.split(batch)])
    correct = (predicted == truth).cpu().numpy()
    rows = {}
    for m, name in enumerate(methods):
        method = make_method(name, classifier, batch_size=64)
        top1, known, sweep = [], [], np.zeros(len(THRESHOLDS))
        deletion, insertion, drops, increases = [], [], [], []
        for start in range(0, count, batch):
            part = slice(start, min(start + batch, count))
            pred_maps = method(images[part], predicted[part]).maps.cpu().numpy()
            true_result = method(images[part], truth[part])
            true_maps = true_result.maps
            for i, index in enumerate(range(part.start, part.stop)):
                top1.append(bool(correct[index]) and localization_hits(pred_maps[i], boxes[index])[0])
                hits = localization_hits(true_maps[i].cpu().numpy(), boxes[index], THRESHOLDS)
                known.append(hits[THRESHOLDS.index(0.2)])
                sweep += np.array(hits, dtype=float)
            if start < faithfulness_count:
                f = slice(0, min(batch, faithfulness_count - start))
                d, ins = deletion_insertion(classifier, images[part][f], true_maps[f], truth[part][f])
                drop, inc = drop_increase(classifier, images[part][f], true_maps[f], truth[part][f])
                deletion += d.tolist()
                insertion += ins.tolist()
                drops += drop.tolist()
                increases += inc.tolist()
            if progress is not None:
                progress(name, m * count + part.stop, len(methods) * count)
        rows[name] = {
            "supervision": "weak (class labels)",
            "top1_loc_accuracy": float(np.mean(top1)),
            "gt_known_loc_accuracy": float(np.mean(known)),
            "max_box_acc": float((sweep / count).max()),
            "best_threshold": float(THRESHOLDS[int(np.argmax(sweep))]),
            "deletion_auc": float(np.mean(deletion)),
            "insertion_auc": float(np.mean(insertion)),
            "average_drop": float(np.mean(drops)),
            "increase_in_confidence": float(np.mean(increases)),
        }
    return {"images": count, "faithfulness_images": min(faithfulness_count, count),
            "classification_accuracy": float(correct.mean()), "methods": rows,
            "protocol": "box of the largest connected region above 20% of the map's max; correct if IoU >= 0.5 with a key box"}


def cam_table_markdown(report: dict) -> str:
    """The evaluation as a Markdown table (the layout of the CAM paper's localisation table)."""
    lines = [
        f"Held-out world scenes: {report['images']} (faithfulness on {report['faithfulness_images']}); "
        f"classifier top-1 accuracy {report['classification_accuracy']:.1%}.", "",
        "| method | supervision | top-1 loc. acc. | GT-known loc. acc. | MaxBoxAcc (best thr.) | deletion AUC (lower better) "
        "| insertion AUC (higher better) | avg. drop | increase in conf. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["methods"].items():
        lines.append(
            f"| {name} | {row['supervision']} | {row['top1_loc_accuracy']:.1%} | {row['gt_known_loc_accuracy']:.1%} | "
            f"{row['max_box_acc']:.1%} ({row['best_threshold']:.2f}) | {row['deletion_auc']:.3f} | "
            f"{row['insertion_auc']:.3f} | {row['average_drop']:.3f} | {row['increase_in_confidence']:.1%} |")
    return "\n".join(lines) + "\n"
