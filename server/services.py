"""Work shared by the API's jobs and the CLI's commands, so neither imports the other.

- ``shared_classifier``: the server's classifier, loaded once per app (``GANPAINT_CLASSIFIER``).
- ``world_images`` / ``ensure_world_probe``: scene-world inputs (images, a cached Broden probe).
- ``featviz_images``: the feature-visualisation recipe (parameterisation, objective, render).
- ``write_netdissect_outputs``: tally.csv, netdissect.json, strips and report.html of a run.
"""

from __future__ import annotations

import html
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dissect_core.datasets.broden import BrodenDataset
from dissect_core.netdissect import NetDissectTable, class_drivers, tally_csv, unique_detectors
from dissect_core.topk import TopK, write_strips

if TYPE_CHECKING:
    from models.proggan import ProgressiveGenerator

__all__ = ["shared_classifier", "world_images", "ensure_world_probe", "featviz_images", "featviz_task",
           "write_netdissect_outputs"]

_classifier_lock = threading.Lock()


def classifier_id(state: Any) -> str:
    """The classifier the server explains: ``GANPAINT_CLASSIFIER``, else the default model's companion."""
    from models.zoo import companion_id

    settings = state.settings
    return settings.classifier or companion_id(settings.default_model, "classifier", settings.zoo_dir)


def shared_classifier(state: Any) -> torch.nn.Module:
    """The app's classifier (loaded on first use; ``ZooError`` when the id is not in the zoo)."""
    with _classifier_lock:
        if getattr(state, "classifier", None) is None:
            from models.zoo import load_model

            state.classifier = load_model(classifier_id(state), str(state.device), state.settings.zoo_dir)
        return state.classifier


def featviz_images(model: torch.nn.Module, layer: str, units: list[int], param_kind: str, steps: int, lr: float,
                   seed: int, generator: ProgressiveGenerator | None = None, diversity_weight: float = 0.0,
                   progress: Callable[[int, int, float], None] | None = None,
                   cancelled: Callable[[], bool] | None = None):
    """One image per unit, optimised as one batch: ``fft`` (1/f spectrum, decorrelated colour),
    ``pixel``, or ``gan`` (the z of ``generator``, a prior of natural-looking world images)."""
    from dissect_core.featviz import FFTImage, GeneratorPrior, PixelImage, Transforms, channel, diversity, render

    gen = torch.Generator().manual_seed(seed)
    batch = len(units)
    param: torch.nn.Module
    if param_kind == "gan":
        if generator is None:
            raise ValueError("the gan parameterisation needs a generator")
        param = GeneratorPrior(generator, batch, 64, gen)
    else:
        param = (FFTImage if param_kind == "fft" else PixelImage)(batch, 64, generator=gen)
    objective = channel(layer, units[0], batch=0)
    for i, unit in enumerate(units[1:], start=1):
        objective = objective + channel(layer, unit, batch=i)
    if diversity_weight:
        objective = objective + diversity_weight * diversity(layer)
    return render(model, objective, param, steps, lr, Transforms(), seed, progress=progress, cancelled=cancelled)


def featviz_task(model: torch.nn.Module, layer: str, units: list[int], param_kind: str, steps: int, lr: float,
                 seed: int, generator: ProgressiveGenerator | None = None,
                 progress: Callable[[str, float], None] | None = None, cancelled: Callable[[], bool] | None = None):
    """``featviz_images`` with the ``(stage, fraction)`` progress a job step reports (``AppState.compute``)."""
    report = (lambda step, total, value: progress(f"objective {value:.3f}", step / total)) if progress else None
    return featviz_images(model, layer, units, param_kind, steps, lr, seed, generator, progress=report,
                          cancelled=cancelled)


def world_images(count: int, size: int = 64, split: str = "probe", cancelled: Callable[[], bool] | None = None) -> list:
    """The first ``count`` scene-world images of a split, as (H, W, 3) uint8 arrays."""
    from models.train.data import world_arrays

    return list(world_arrays(split, count, size, progress=False, cancelled=cancelled)["images"])


def ensure_world_probe(count: int, size: int = 64, cancelled: Callable[[], bool] | None = None) -> Path:
    """A Broden export of the world's probe split in the cache (made once)."""
    from models.train.data import default_cache_dir
    from models.world.broden import export_broden
    from models.world.render import WORLD_VERSION

    out = default_cache_dir() / "probe" / f"v{WORLD_VERSION}-{size}px-{count}"
    if not (out / "index.csv").exists():
        import shutil
        import tempfile

        staging = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
        try:
            export_broden(staging / "probe", count, size, progress=cancelled is None, cancelled=cancelled)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / "probe", out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


class _ProbeImages:
    """A probe set's images decoded on access (no label maps): what the strips need."""

    def __init__(self, probe: BrodenDataset) -> None:
        self.probe = probe

    def __len__(self) -> int:
        return len(self.probe)

    def __getitem__(self, index: int):
        return self.probe.image(index)


def write_netdissect_outputs(model, table: NetDissectTable, probe: BrodenDataset, out: Path, strips: int) -> dict:
    """tally.csv (NetDissect-Lite's layout), netdissect.json, top-image strips and report.html in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "tally.csv").write_text(tally_csv(table))
    units: list[dict[str, Any]] = []
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
    if strips > 0:  # only the shown units' top images are decoded
        top = TopK(table.layer, table.level, table.top_images, table.top_images.astype(float))
        write_strips(model, top, _ProbeImages(probe), out / "image", [u["unit"] for u in ranked[:strips]], count=8)
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
