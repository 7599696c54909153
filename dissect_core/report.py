"""Top-image strips, bar charts and an HTML page per dissected layer.

Strips follow NetDissect's look: each top image is shown as ``image * (0.2 + 0.8 * mask)`` where
``mask`` is the unit's activation (bilinearly upsampled to the image) above its level, so the region
the unit fires on stays bright and the rest is dimmed.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from dissect_core.gandissect import MIN_IQR, LayerTable, upsample_to
from dissect_core.nethook import Trace
from models.imaging import to_uint8
from models.samples import z_tensor

if TYPE_CHECKING:  # the ProGAN interface the engines call (layer_shape, forward_to, z_dim)
    from models.proggan import ProgressiveGenerator

__all__ = ["unit_strips", "masked_image", "bargraph_svg", "write_layer_report"]


def masked_image(image: np.ndarray, activation: torch.Tensor, level: float) -> np.ndarray:
    """(H, W, 3) uint8 image dimmed outside ``activation > level`` (activation (h, w), upsampled)."""
    size = image.shape[0]
    mask = (upsample_to(activation[None, None].float(), size)[0, 0] > level).cpu().numpy()
    return (image.astype(np.float32) * (0.2 + 0.8 * mask[..., None])).round().astype(np.uint8)


@torch.no_grad()
def render_with_activations(generator: ProgressiveGenerator, layer: str, ids: list[int], seed: int = 1,
                            batch_size: int = 32) -> tuple[dict[int, np.ndarray], dict[int, torch.Tensor]]:
    """Images (uint8) and the layer's activations for sample ids."""
    device = next(generator.parameters()).device
    images, acts = {}, {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        with Trace(generator, layer) as trace:
            out = generator(z_tensor(batch, generator.z_dim, seed, device))
        pixels = to_uint8(out)
        for i, sample_id in enumerate(batch):
            images[sample_id] = pixels[i]
            acts[sample_id] = trace[layer][i].cpu()
    return images, acts


def unit_strips(generator: ProgressiveGenerator, table: LayerTable, out_dir: Path, count: int = 6,
                units: list[int] | None = None) -> dict[int, str]:
    """Write ``<unit>-top.png`` strips (``count`` top images, masked) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    units = list(range(table.units)) if units is None else units
    wanted = sorted({int(i) for u in units for i in table.top_images[u][:count]})
    images, acts = render_with_activations(generator, table.layer, wanted, table.config.seed)
    written = {}
    for unit in units:
        tiles = [masked_image(images[int(i)], acts[int(i)][unit], float(table.level[unit]))
                 for i in table.top_images[unit][:count]]
        strip = np.concatenate(tiles, axis=1)
        path = out_dir / f"{unit}-top.png"
        Image.fromarray(strip).save(path)
        written[unit] = path.name
    return written


def bargraph_svg(table: LayerTable) -> str:
    """SVG bar chart: number of interpretable units per concept, grouped and coloured by category."""
    counts: Counter[tuple[str, str]] = Counter()
    for unit in range(table.units):
        summary = table.unit_summary(unit)
        if summary["interpretable"]:
            counts[(summary["category"], summary["label"])] += 1
    palette = {"object": "#4b8bbe", "material": "#c97b4a", "color": "#8a6bbf", "part": "#5aa469", "scene": "#d4a017"}
    bars = sorted(counts.items(), key=lambda item: (table.categories.index(item[0][0]) if item[0][0] in table.categories else 99, -item[1]))
    width, height, bar = max(200, 24 * len(bars) + 40), 220, 18
    top = max(counts.values(), default=1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">']
    for i, ((category, label), n) in enumerate(bars):
        x = 30 + i * 24
        h = 130 * n / top
        parts.append(f'<rect x="{x}" y="{150 - h:.1f}" width="{bar}" height="{h:.1f}" fill="{palette.get(category, "#888")}">'
                     f"<title>{html.escape(label)} ({category}): {n}</title></rect>")
        parts.append(f'<text x="{x + bar / 2}" y="{146 - h:.1f}" text-anchor="middle">{n}</text>')
        parts.append(f'<text transform="translate({x + bar / 2},{158}) rotate(60)" font-size="9">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_layer_report(generator: ProgressiveGenerator, table: LayerTable, out_dir: Path, strips: int = 6) -> Path:
    """``report.html`` + ``image/*.png`` + ``bargraph.svg`` for one layer; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = unit_strips(generator, table, out_dir / "image", strips)
    (out_dir / "bargraph.svg").write_text(bargraph_svg(table))
    summaries = sorted((table.unit_summary(u) for u in range(table.units)), key=lambda s: -s["iou"])
    interpretable = sum(s["interpretable"] for s in summaries)
    iqr_rule = f" and IQR &gt; {MIN_IQR}" if table.iqr is not None else ""
    threshold = ("each unit's most informative level (IQR)" if table.config.threshold == "iqr"
                 else f"top {table.config.quantile:.2%} of activations")
    rows = []
    for s in summaries:
        dim = "" if s["interpretable"] else ' class="low"'
        rows.append(
            f"<tr{dim}><td>{s['unit']}</td><td>{html.escape(s['label'])}</td><td>{s['category']}</td>"
            f"<td>{s['iou']:.3f}</td><td>{s['level']:.3f}</td><td>{s['q99']:.3f}</td>"
            f"<td><img src=\"image/{written[s['unit']]}\" alt=\"unit {s['unit']} top images\"></td></tr>"
        )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{table.layer} dissection</title>
<style>body{{font-family:sans-serif;margin:1em}} td{{padding:2px 6px}} tr.low{{opacity:.45}}
img{{image-rendering:pixelated;height:64px}} th{{text-align:left}}</style></head><body>
<h1>{html.escape(table.layer)}: {interpretable}/{table.units} units with IoU &gt; {table.config.min_iou}{iqr_rule}</h1>
<p>{table.config.samples} samples (seed {table.config.seed}), threshold: {threshold}.</p>
<p><img src="bargraph.svg" alt="detectors per concept" style="height:auto"></p>
<table><tr><th>unit</th><th>label</th><th>category</th><th>IoU</th><th>level</th><th>q99</th><th>top images</th></tr>
{''.join(rows)}</table></body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
