"""``ganpaint cache info|clear``: what the cache directory holds, and emptying it.

The cache (``$GANPAINT_CACHE_DIR``, default ``~/.cache/ganpaint``) holds rendered scene-world data
sets for training and evaluation (``world/``: images and label maps, about 100 KB per 128 px image
with its labels), Broden probe exports (``probe/``), dissection tables the server built
(``dissect/``) and job results (``jobs/``). Everything in it can be made again; deleting it only
costs the time to remake what is next needed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from models.train.data import default_cache_dir
from server.commands import Command, CommandError

PARTS = ("world", "probe", "dissect", "jobs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "clear"), help="info: sizes per part; clear: delete")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="clear only this part (repeatable; default: everything)")
    parser.add_argument("--cache-dir", type=Path, help="default: $GANPAINT_CACHE_DIR or ~/.cache/ganpaint")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def run(args: argparse.Namespace) -> int:
    root = (args.cache_dir or default_cache_dir()).expanduser()
    if args.action == "info":
        if args.only:
            raise CommandError("--only goes with clear")
        parts = {p.name: _size(p) for p in sorted(root.iterdir())} if root.is_dir() else {}
        print(json.dumps({"cache_dir": str(root), "bytes": sum(parts.values()), "parts": parts}))
        return 0
    chosen = [root / name for name in (args.only or [])] or ([root] if root.is_dir() else [])
    freed = 0
    for path in chosen:
        if path.exists():
            freed += _size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    print(json.dumps({"cache_dir": str(root), "cleared": [p.name if p != root else "all" for p in chosen],
                      "freed_bytes": freed}))
    return 0


COMMAND = Command(name="cache", help="show or clear the cache (rendered world data, probe sets, tables, jobs)",
                  add_arguments=add_arguments, run=run)
