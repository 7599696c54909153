"""The models the server offers, their dissection tables and brushes.

Models are referred to by id only: the default zoo generator, and one model per checkpoint file in
the operator's ``models_dir`` (id = the file's stem, lower-cased). A model's dissection table for a
layer comes from a table shipped in the zoo next to the weights (when its recorded sha256 matches)
or the cache (keyed by model sha256, layer, settings, segmenter); looking one up never builds it.
Building is ``build_table``, run as a job (``server.tables``) with progress, cancel and a checkpoint.
Without a segmenter, extra models paint with explicit units only.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from dissect_core.build import build_layer_tables
from dissect_core.gandissect import DissectConfig, LayerTable
from dissect_core.nethook import private_copy
from dissect_core.segmenters import Segmenter, load_segmenter
from dissect_core.sharded import ShardRunner
from dissect_core.tables import TableError, cache_key, cached_table, load_table, save_table
from models.checkpoints import CheckpointError, file_sha256, load_generator
from models.encoder import load_encoder_file
from models.proggan import ProgressiveGenerator
from models.world.labels import LABEL_BY_NAME
from models.zoo import ZooError, companion_id, get_entry
from server.errors import ModelUnavailable, ServiceError, UnknownModel
from server.jobs import JobCancelled

__all__ = ["Catalog", "LoadedModel", "TableState", "checkpoint_model_id"]

log = logging.getLogger(__name__)
_STEM = re.compile(r"[^a-z0-9_-]+")


def checkpoint_model_id(path: Path) -> str:
    """The id a checkpoint in the operator's models directory is served under (its stem, lower-cased)."""
    return _STEM.sub("-", path.stem.lower()).strip("-")[:64] or "model"


TableStatus = Literal["missing", "building", "ready", "failed", "unavailable"]


REMOTE_LOOKUP_S = 1.0
"""How often a render looks in the shared cache for a table another replica is building."""


@dataclass
class TableState:
    status: TableStatus = "missing"
    progress: float = 0.0
    table: LayerTable | None = None
    error: str | None = None
    job: str | None = None
    """Id of the job building it, when one was started."""
    remote: bool = False
    """The build runs in another server process (a shared job store): its table is picked up from
    the shared cache when it appears there, so every replica paints with the same table."""
    looked: float = float("-inf")
    """When (``time.monotonic``) the shared cache was last looked at for a remote build's table."""


@dataclass
class LoadedModel:
    id: str
    weights: Path
    generator: ProgressiveGenerator
    sha256: str
    edit_layer: str
    shipped_tables: Path | None = None
    tables: dict[str, TableState] = field(default_factory=dict)
    fallback_levels: dict[str, torch.Tensor] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        g = self.generator
        return {
            "id": self.id, "resolution": g.resolution, "z_dim": g.z_dim, "edit_layer": self.edit_layer,
            "layers": [{"name": n, "shape": list(g.layer_shape(n))} for n in g.layer_names],
            "tables": {layer: {"status": s.status, "progress": round(s.progress, 3), "job": s.job}
                       for layer, s in self.tables.items()},
        }


class Catalog:
    """Loads models on demand, finds their tables, and does the work of building one."""

    def __init__(self, default_model: str, models_dir: Path | None, cache_dir: Path, segmenter_spec: str | None,
                 device: torch.device, dissect_samples: int = 2000, causal_samples: int = 64,
                 zoo_dir: Path | None = None, dissect_threshold: str = DissectConfig.threshold,
                 checkpoint_every_s: float = 30.0, shard_runner: Callable[[], ShardRunner] | None = None) -> None:
        self.default_model = default_model
        self.zoo_dir = zoo_dir
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.segmenter_spec = segmenter_spec or None
        self.device = device
        self.dissect_samples = dissect_samples
        self.causal_samples = causal_samples
        self.dissect_threshold = dissect_threshold
        self.checkpoint_every_s = checkpoint_every_s
        self.shard_runner = shard_runner
        """Where table builds run their dissection passes (``GANPAINT_JOB_RUNNER=ray``); None: here."""
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.RLock()
        self._segmenter: Segmenter | None = None
        self._encoders: dict[str, torch.nn.Module | None] = {}

    # --- models ---------------------------------------------------------------------------------
    def available(self) -> dict[str, Path]:
        """Model ids the server can offer and their weight files."""
        found: dict[str, Path] = {}
        try:
            found[self.default_model] = get_entry(self.default_model, self.zoo_dir).weights
        except ZooError:
            pass
        if self.models_dir is not None and self.models_dir.is_dir():
            for path in sorted(self.models_dir.iterdir()):
                if path.suffix in (".pth", ".pt", ".safetensors") and path.is_file():
                    model_id = checkpoint_model_id(path)
                    found.setdefault(model_id, path)
        return found

    def get(self, model_id: str) -> LoadedModel:
        """The model, loaded on first use (reads weights: call it off the event loop). Raises
        ``UnknownModel`` for an id the server does not offer, ``ModelUnavailable`` for weights that
        cannot be loaded (a missing or corrupt file, named in the message)."""
        with self._lock:
            if model_id in self._models:
                return self._models[model_id]
            try:
                return self._load(model_id)
            except (CheckpointError, ZooError) as exc:
                raise ModelUnavailable(f"model {model_id!r} cannot be loaded: {exc}") from exc

    def _load(self, model_id: str) -> LoadedModel:
        if model_id == self.default_model:
            get_entry(model_id, self.zoo_dir)  # a missing or broken default is an error naming the file
        paths = self.available()
        if model_id not in paths:
            raise UnknownModel(f"unknown model {model_id!r}; models are {', '.join(sorted(paths)) or 'none'}")
        weights = paths[model_id]
        generator = load_generator(weights, device=self.device)
        generator.requires_grad_(False)
        edit_layer = "layer4" if "layer4" in generator.layer_names else generator.layer_names[len(generator.layer_names) // 2]
        shipped = weights.parent / "dissection" if model_id == self.default_model else None
        model = LoadedModel(model_id, weights, generator, file_sha256(weights), edit_layer, shipped)
        self._models[model_id] = model
        return model

    def cached(self, model_id: str) -> LoadedModel | None:
        """The model if it is loaded already (no I/O)."""
        with self._lock:
            return self._models.get(model_id)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def encoder(self, model: LoadedModel) -> torch.nn.Module | None:
        """The model's picture encoder (``models.encoder``), loaded once: the zoo's ``<model>/encoder``
        for the default model, ``<stem>.encoder.safetensors`` beside an operator checkpoint; None
        when there is none (uploads cannot be painted then: ``ganpaint train encoder`` makes one)."""
        with self._lock:
            if model.id in self._encoders:
                return self._encoders[model.id]
        found: torch.nn.Module | None = None
        if model.id == self.default_model:
            from models.zoo import load_model as load_zoo_model

            try:
                found = load_zoo_model(companion_id(model.id, "encoder", self.zoo_dir), str(self.device), self.zoo_dir)
            except ZooError:
                found = None
        else:
            path = model.weights.with_name(f"{model.weights.stem}.encoder.safetensors")
            if path.is_file():
                found = load_encoder_file(path, model.generator, model.edit_layer, str(self.device))
        with self._lock:
            self._encoders[model.id] = found
        return found

    # --- tables ---------------------------------------------------------------------------------
    def segmenter(self) -> Segmenter | None:
        if self.segmenter_spec is None:
            return None
        with self._lock:
            if self._segmenter is None:
                self._segmenter = load_segmenter(self.segmenter_spec, str(self.device), self.zoo_dir)
            return self._segmenter

    def table_state(self, model: LoadedModel, layer: str) -> TableState:
        with self._lock:
            return model.tables.setdefault(layer, TableState())

    def table(self, model: LoadedModel, layer: str) -> LayerTable | None:
        state = self.table_state(model, layer)
        if state.table is None and state.remote:
            # built elsewhere: in the shared cache yet? (a cache key and a stat: on the paint path,
            # so at most every REMOTE_LOOKUP_S, not on every render)
            now = time.monotonic()
            if now - state.looked >= REMOTE_LOOKUP_S:
                state.looked = now
                self.lookup_table(model, layer)
        return state.table

    def server_config(self) -> DissectConfig:
        """How the tables the painter uses are made (``GANPAINT_DISSECT_SAMPLES``, ``_THRESHOLD``)."""
        return DissectConfig(samples=self.dissect_samples, threshold=self.dissect_threshold)

    def table_key(self, model: LoadedModel, layer: str, config: DissectConfig) -> tuple[str, str]:
        """(cache key, segmenter identity) of the table of ``layer`` made with ``config``."""
        segmenter = self.segmenter()
        if segmenter is None:
            raise ServiceError("the server has no segmenter configured (GANPAINT_SEGMENTER)", "no_segmenter", 422)
        identity = str(getattr(segmenter, "identity", self.segmenter_spec))
        return cache_key(model.sha256, layer, config, f"{identity}|causal={self.causal_samples}"), identity

    def lookup_table(self, model: LoadedModel, layer: str) -> TableState:
        """The table of ``layer`` if one exists already (shipped with the model, or in the cache);
        reads files, never builds. A missing table stays ``missing`` (``unavailable`` without a
        segmenter): building is a job (``build_table``), started on purpose."""
        state = self.table_state(model, layer)
        with self._lock:
            if state.status in ("ready", "unavailable") or (state.status == "building" and not state.remote):
                return state
            shipped = self._shipped_table(model, layer)
            if shipped is not None:
                state.table, state.status, state.progress = shipped, "ready", 1.0
                return state
            if self.segmenter_spec is None:
                state.status, state.error = "unavailable", "no segmenter configured; paint with explicit units"
                return state
        key, _ = self.table_key(model, layer, self.server_config())
        directory = self.cache_dir / "dissect" / key
        if (directory / "table.json").exists():
            try:
                table = load_table(directory)
            except TableError as exc:
                log.warning("dissection cache %s is damaged (%s); it will be rebuilt", directory, exc)
            else:
                with self._lock:
                    state.table, state.status, state.progress, state.remote = table, "ready", 1.0, False
        return state

    def _shipped_table(self, model: LoadedModel, layer: str) -> LayerTable | None:
        if model.shipped_tables is None or not (model.shipped_tables / layer).exists():
            return None
        try:
            table = load_table(model.shipped_tables / layer)
            provenance = json.loads((model.shipped_tables / layer / "table.json").read_text()).get("provenance", {})
        except (TableError, OSError, ValueError) as exc:
            log.warning("shipped table for %s/%s is unusable (%s)", model.id, layer, exc)
            return None
        if provenance.get("model_sha256") != model.sha256:
            log.warning("shipped table for %s/%s was made for other weights; ignoring it", model.id, layer)
            return None
        return table

    def adopt_table(self, model: LoadedModel, layer: str, directory: Path) -> None:
        """Use the copy of the painter's table a finished build job kept (when the cache lost its
        own), and put it back in the cache."""
        try:
            table = load_table(directory)
            key, identity = self.table_key(model, layer, self.server_config())
            save_table(table, self.cache_dir / "dissect" / key, {"model": model.id, "model_sha256": model.sha256,
                                                                 "segmenter": identity,
                                                                 "causal_samples": self.causal_samples})
        except (TableError, OSError) as exc:
            log.warning("table of a finished build %s is unusable (%s)", directory, exc)
            return
        state = self.table_state(model, layer)
        with self._lock:
            state.table, state.status, state.progress = table, "ready", 1.0

    def build_table(self, model: LoadedModel, layer: str, config: DissectConfig | None = None,
                    progress: Callable[[str, float], None] | None = None,
                    cancelled: Callable[[], bool] | None = None,
                    note: Callable[[str], None] | None = None) -> LayerTable:
        """Build (or read from the cache) the table of ``layer`` with ``config`` (default: the server's,
        which makes it the painter's table). The work of a table job: statistics are checkpointed in
        the cache as it goes, so a build stopped by a restart continues where it was."""
        config = config or self.server_config()
        painter_table = config == self.server_config()
        state = self.table_state(model, layer)
        key, identity = self.table_key(model, layer, config)
        segmenter = self.segmenter()
        assert segmenter is not None
        partial = self.cache_dir / "dissect" / f"{key}.partial"
        if painter_table:
            with self._lock:
                state.status, state.progress, state.error = "building", 0.0, None

        def report(stage: str, fraction: float) -> None:
            if painter_table:
                state.progress = fraction
            if progress is not None:
                progress(stage, fraction)

        def compute() -> LayerTable:
            if note is not None and any(partial.glob("*.pt")):
                note(f"continued from the checkpoint in {partial.name}")
            log.info("dissecting %s %s on %d samples", model.id, layer, config.samples)
            generator = private_copy(model.generator)  # the executor renders with the shared one
            runner = self.shard_runner() if self.shard_runner is not None else None
            if runner is not None and note is not None:
                note(f"dissection passes as Ray shard tasks, {runner.workers} at a time")
            return build_layer_tables(generator, [layer], segmenter, config, self.causal_samples, report, cancelled,
                                      partial, {"model_sha256": model.sha256, "segmenter": identity},
                                      self.checkpoint_every_s, runner=runner)[layer]

        started = time.monotonic()
        try:
            table = cached_table(self.cache_dir / "dissect", key, compute,
                                 {"model": model.id, "model_sha256": model.sha256, "segmenter": identity,
                                  "causal_samples": self.causal_samples})
        except BaseException as exc:
            if painter_table:
                with self._lock:
                    if isinstance(exc, Exception) and not isinstance(exc, (InterruptedError, JobCancelled)):
                        state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
                    else:  # stopped: the checkpoint stays, the next build continues from it
                        state.status = "missing"
            raise
        shutil.rmtree(partial, ignore_errors=True)
        if painter_table:
            with self._lock:
                state.table, state.status, state.progress = table, "ready", 1.0
        log.info("table of %s %s ready in %.1f s", model.id, layer, time.monotonic() - started)
        return table

    def fallback_levels(self, model: LoadedModel, layer: str, samples: int = 64) -> torch.Tensor:
        """Per-unit q99 levels estimated from ``samples`` samples (for models without a table)."""
        with self._lock:
            cached = model.fallback_levels.get(layer)
        if cached is not None:
            return cached
        from models.samples import z_tensor

        with torch.inference_mode():
            acts = model.generator.forward_to(layer, z_tensor(range(samples), model.generator.z_dim, device=self.device))
        levels = acts.transpose(0, 1).flatten(1).float().quantile(0.99, dim=1)
        with self._lock:
            model.fallback_levels[layer] = levels
        return levels

    # --- brushes --------------------------------------------------------------------------------
    def brushes(self, model: LoadedModel, layer: str) -> list[dict[str, Any]]:
        """Concepts with a detector unit (IoU above the table's threshold) or a measured causal effect
        (ablating the best unit alone removes >= 0.5 % of its pixels): ranked units and their levels,
        and how "add" inserts (``feature``: the concept's mean feature on every unit; ``units``: the
        ranked units at their levels)."""
        table = self.table(model, layer)
        if table is None:
            return []
        out = []
        for number, (name, category) in enumerate(table.labels):
            if number == 0 or category not in ("object", "material", "part"):
                continue
            column = table.iou[:, number]
            causal = table.causal_effect.get(name, [0.0])
            if column.max() <= table.config.min_iou and max(causal[:1] or [0.0]) < 0.005:
                continue
            ranking = table.concept_ranking(name)[:64]
            label = LABEL_BY_NAME.get(name)
            out.append({
                "name": name, "category": category,
                "color": "#%02x%02x%02x" % label.rgb if label else "#888888",
                "ranking": "causal" if name in table.causal else "iou",
                "units": ranking, "levels": [round(float(table.q99[u]), 5) for u in ranking],
                "best_iou": round(float(column.max()), 4),
                "insertion": table.insertion(name),
            })
        return sorted(out, key=lambda b: (b["category"] != "object", b["name"]))

