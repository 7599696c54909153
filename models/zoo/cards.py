"""Model cards: one JSON file (machine-readable, also the zoo registry entry) and its Markdown twin."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["write_card", "read_card", "hardware_description", "card_markdown"]


def hardware_description() -> str:
    """Where training or evaluation ran: CPU model and cores, or the CUDA device."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, no GPU, torch {torch.__version__}"


def read_card(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value) + "`"
    return str(value)


def card_markdown(card: dict[str, Any]) -> str:
    """Human-readable rendering of a card."""
    lines = [f"# {card['id']} ({card['kind']})", ""]
    if card.get("summary"):
        lines += [card["summary"], ""]
    lines += ["| field | value |", "|---|---|"]
    for key in ("file", "dtype", "bytes", "sha256"):
        if key in card:
            lines.append(f"| {key} | {_fmt(card[key])} |")
    for section in ("architecture", "training", "data"):
        if card.get(section):
            lines += ["", f"## {section.capitalize()}", "", "| field | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in card[section].items()]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics", "", f"Produced by `{metrics.get('command', 'ganpaint evaluate')}`.", ""]
        for key, value in metrics.items():
            if key == "command":
                continue
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                columns = list(next(iter(value.values())).keys())
                lines += [f"### {key}", "", "| name | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
                lines += [f"| {n} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for n, row in value.items()]
                lines.append("")
            elif isinstance(value, dict):
                lines += [f"### {key}", "", "| name | value |", "|---|---|"]
                lines += [f"| {n} | {_fmt(v)} |" for n, v in value.items()]
                lines.append("")
            else:
                lines.append(f"- **{key}**: {_fmt(value)}")
    return "\n".join(lines).rstrip() + "\n"


def write_card(path: Path, card: dict[str, Any]) -> None:
    """Atomically write ``path`` (JSON) and ``path`` with ``.md`` (Markdown)."""
    path = Path(path)
    for target, text in ((path, json.dumps(card, indent=2, sort_keys=False) + "\n"),
                         (path.with_suffix(".md"), card_markdown(card))):
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
