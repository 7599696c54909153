"""Comparing representations: detectors per category across models, layers or training snapshots."""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["detectors_markdown", "detectors_svg"]

PALETTE = {"object": "#4b8bbe", "material": "#c97b4a", "color": "#8a6bbf", "part": "#5aa469", "scene": "#d4a017"}


def detectors_markdown(rows: Sequence[dict], categories: Sequence[str]) -> str:
    """``rows``: ``{"name", "units", "interpretable", "detectors": {category: n}}`` -> Markdown table."""
    header = "| model / layer | units | interpretable | " + " | ".join(categories) + " |"
    lines = [header, "|---" * (len(categories) + 3) + "|"]
    for row in rows:
        cells = " | ".join(str(row["detectors"].get(c, 0)) for c in categories)
        lines.append(f"| {row['name']} | {row['units']} | {row['interpretable']} ({row['interpretable'] / max(row['units'], 1):.0%}) | {cells} |")
    return "\n".join(lines) + "\n"


def detectors_svg(rows: Sequence[dict], categories: Sequence[str], title: str = "") -> str:
    """Grouped bars: interpretable units per category for each row (model, layer or snapshot)."""
    group_width = 18 * len(categories) + 14
    width, height = 60 + group_width * len(rows), 240
    top = max([max(r["detectors"].values(), default=0) for r in rows] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">',
             f'<text x="10" y="14" font-size="12">{html.escape(title)}</text>']
    for i, row in enumerate(rows):
        x0 = 50 + i * group_width
        for j, category in enumerate(categories):
            n = row["detectors"].get(category, 0)
            h = 150 * n / top
            parts.append(f'<rect x="{x0 + j * 18}" y="{190 - h:.1f}" width="15" height="{h:.1f}" '
                         f'fill="{PALETTE.get(category, "#888")}"><title>{html.escape(row["name"])} {category}: {n}</title></rect>')
        parts.append(f'<text x="{x0}" y="205" font-size="9">{html.escape(row["name"][:22])}</text>')
    for j, category in enumerate(categories):
        parts.append(f'<rect x="{50 + j * 70}" y="222" width="10" height="10" fill="{PALETTE.get(category, "#888")}"/>'
                     f'<text x="{64 + j * 70}" y="231">{category}</text>')
    parts.append("</svg>")
    return "".join(parts)
