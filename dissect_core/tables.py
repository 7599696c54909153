"""Dissection tables on disk: versioned JSON + npz, and a cache keyed by everything they depend on.

A table directory holds ``table.json`` (format version, provenance, per-unit summaries, per-concept
rankings) and ``arrays.npz`` (iou, level, q99, top images and scores). Writes are atomic: a
crash or a full disk leaves the previous table intact. ``load_table`` raises ``TableError`` on
anything unreadable, which the cache turns into a recompute with a warning.

Cache key: sha256 of (model sha256, layer, samples, seed, first id, segmenter identity, quantiles,
table version), so a change in any of them means a different directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dissect_core.gandissect import MIN_IQR, DissectConfig, LayerTable

__all__ = ["TABLE_VERSION", "TableError", "save_table", "load_table", "cache_key", "cached_table", "table_json"]

TABLE_VERSION = 2
"""2: IQR-mode units are labelled by their IQR-chosen label (``iqr_label``); older tables are rebuilt."""

OPTIONAL_ARRAYS = ("iqr", "iqr_label", "concept_features", "concept_cells", "insertion_alpha", "insertion_value")
"""Arrays a table may lack (older tables, netdissect mode, brushes not learned)."""

log = logging.getLogger(__name__)


class TableError(ValueError):
    """A table directory that cannot be read (missing, corrupt, other version)."""


def table_json(table: LayerTable, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of a table (also what the API serves)."""
    concepts = {}
    for number, (name, category) in enumerate(table.labels):
        if number == 0:
            continue
        ranking = table.concept_ranking(name)
        column = table.iou[:, number]
        concepts[name] = {
            "category": category,
            "ranking": ranking[:64],
            "ranking_metric": "causal" if name in table.causal else "iou",
            "best_iou": float(column.max()),
            "detectors": len(table.detectors(name)),
            "insertion": table.insertion(name),
        }
        if name in table.causal_effect:
            concepts[name]["causal_effect"] = table.causal_effect[name][:64]
    return {
        "version": TABLE_VERSION,
        "layer": table.layer,
        "shape": list(table.shape),
        "categories": table.categories,
        "labels": [list(label) for label in table.labels],
        "config": dataclasses.asdict(table.config),
        "provenance": provenance or {},
        "interpretable": int(table.interpretable.sum()),
        "min_iqr": MIN_IQR if table.iqr is not None else None,
        "detectors_per_category": table.detectors_per_category(),
        "units": [table.unit_summary(u) for u in range(table.units)],
        "concepts": concepts,
        "gallery": table.gallery,
    }


def save_table(table: LayerTable, directory: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> Path:
    """Write ``table.json`` + ``arrays.npz`` into ``directory`` atomically (replacing a previous table)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".", suffix=".tmp", dir=directory.parent))
    try:
        document = table_json(table, provenance)
        document["causal"] = table.causal
        document["causal_effect"] = table.causal_effect
        (staging / "table.json").write_text(json.dumps(document))
        extra = {name: getattr(table, name) for name in OPTIONAL_ARRAYS if getattr(table, name) is not None}
        np.savez_compressed(staging / "arrays.npz", iou=table.iou, level=table.level, q99=table.q99,
                            top_images=table.top_images, top_scores=table.top_scores, **extra)
        staging.chmod(0o755)  # mkdtemp makes it private; a table is read by whoever serves it
        backup = None
        if directory.exists():
            backup = directory.with_name(directory.name + ".old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(directory, backup)
        os.replace(staging, directory)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def load_table(directory: str | os.PathLike[str]) -> LayerTable:
    """Read a table written by ``save_table``; ``TableError`` when it is missing or damaged."""
    directory = Path(directory)
    try:
        document = json.loads((directory / "table.json").read_text())
        if document.get("version") != TABLE_VERSION:
            raise TableError(f"{directory}: table version {document.get('version')}, expected {TABLE_VERSION}")
        with np.load(directory / "arrays.npz") as arrays:
            data = {k: arrays[k] for k in ("iou", "level", "q99", "top_images", "top_scores")}
            for name in OPTIONAL_ARRAYS:  # absent in older tables
                data[name] = arrays[name] if name in arrays.files else None
        table = LayerTable(
            layer=document["layer"], shape=tuple(document["shape"]), labels=[tuple(x) for x in document["labels"]],
            categories=list(document["categories"]), config=DissectConfig(**document["config"]),
            causal={k: [int(u) for u in v] for k, v in document.get("causal", {}).items()},
            causal_effect={k: [float(e) for e in v] for k, v in document.get("causal_effect", {}).items()},
            gallery=dict(document.get("gallery", {})), **data,
        )
    except TableError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise TableError(f"{directory}: unreadable dissection table ({type(exc).__name__}: {exc})") from exc
    units = table.shape[0]
    if table.iou.shape != (units, len(table.labels)) or table.level.shape != (units,):
        raise TableError(f"{directory}: arrays do not match the table's shape")
    return table


def cache_key(model_sha256: str, layer: str, config: DissectConfig, segmenter_identity: str) -> str:
    """Hex digest naming the cache entry for these inputs."""
    parts = {"model": model_sha256, "layer": layer, "config": dataclasses.asdict(config),
             "segmenter": segmenter_identity, "version": TABLE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def cached_table(cache_dir: str | os.PathLike[str], key: str, compute: Callable[[], LayerTable],
                 provenance: dict[str, Any] | None = None) -> LayerTable:
    """The table under ``cache_dir/key``, computing and storing it when missing or unreadable."""
    directory = Path(cache_dir) / key
    if directory.exists():
        try:
            return load_table(directory)
        except TableError as exc:
            log.warning("dissection cache %s is damaged (%s); recomputing", directory, exc)
    table = compute()
    try:
        save_table(table, directory, provenance)
    except OSError as exc:  # disk full, read-only cache: serve the table anyway
        log.warning("could not write dissection cache %s (%s); the old cache (if any) is kept", directory, exc)
    return table
