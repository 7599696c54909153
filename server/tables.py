"""Table builds as jobs: which layers may get one, who starts it, and what the painter sees meanwhile.

Reading a table never starts work: ``Catalog.lookup_table`` finds a shipped or cached one. A build
is a job in the one job queue (bounded, one at a time, cancellable, progress and an ETA on
``/ws/jobs``), started by the server for each model's edit layer when it has no table, or on
purpose with ``POST /api/dissect``; and only where the operator allows it (``GANPAINT_TABLE_BUILDS``:
``edit_layer``, the default, builds only the layer the painter edits; ``editable`` any layer before
the output; ``none`` nothing). Its statistics are checkpointed, so a restart continues the build.
"""

from __future__ import annotations

import logging
from typing import Any

from dissect_core.gandissect import DissectConfig, interpretable_fraction
from dissect_core.tables import save_table
from server.api.errors import ApiError
from server.catalog import LoadedModel
from server.jobs import Job, QueueFull

__all__ = ["editable", "may_build", "start_table_build", "ensure_edit_table"]

log = logging.getLogger(__name__)


def editable(model: LoadedModel, layer: str) -> bool:
    """Layers a painter can edit: every block before the output."""
    return layer in model.generator.layer_names and not layer.startswith("output")


def may_build(setting: str, model: LoadedModel, layer: str) -> bool:
    if not editable(model, layer) or setting == "none":
        return False
    return setting == "editable" or layer == model.edit_layer


def start_table_build(state: Any, model: LoadedModel, layer: str, config: DissectConfig | None = None) -> Job:
    """Queue the build of ``layer``'s table (``config``: the server's when None, which makes it the
    painter's table). Raises ``ApiError`` for a layer that cannot have one or may not be built."""
    if not editable(model, layer):
        raise ApiError(404, "unknown_layer", f"model {model.id!r} has no editable layer {layer!r}")
    setting = state.settings.table_builds
    if not may_build(setting, model, layer):
        allowed = "no layer" if setting == "none" else f"each model's edit layer ({model.edit_layer} here)"
        raise ApiError(403, "builds_disabled", f"this server builds tables for {allowed}; "
                       "the operator sets GANPAINT_TABLE_BUILDS=editable to allow any layer")
    catalog = state.catalog
    if catalog.segmenter() is None:
        raise ApiError(422, "no_segmenter", "the server has no segmenter configured (GANPAINT_SEGMENTER)")
    config = config or catalog.server_config()
    params = {"model": model.id, "model_sha256": model.sha256, "layer": layer, "samples": config.samples,
              "quantile": config.quantile, "threshold": config.threshold, "causal_samples": catalog.causal_samples}

    def work(job: Job) -> dict[str, Any]:
        table = catalog.build_table(model, layer, config, progress=lambda stage, f: job.report(f, stage),
                                    cancelled=job.cancelled, note=job.note)
        save_table(table, job.directory / "table", {"model": model.id, "model_sha256": model.sha256})
        return {"layer": layer, "interpretable_fraction": interpretable_fraction(table),
                "detectors_per_category": table.detectors_per_category(), "table": "table/table.json",
                "painter_table": config == catalog.server_config()}

    try:
        job = state.jobs.submit("table", params, work)
    except QueueFull as exc:
        raise ApiError(503, "busy", str(exc), {"Retry-After": "5"}) from None
    if config == catalog.server_config():
        table_state = catalog.table_state(model, layer)
        table_state.job = job.id
        table_state.remote = job.remote and table_state.status != "ready"
        if table_state.status != "ready" and job.status in ("queued", "running"):
            table_state.status = "building"
        elif table_state.status != "ready" and job.status == "done":  # built before; its cache entry is gone
            catalog.adopt_table(model, layer, job.directory / "table")
    return job


def ensure_edit_table(state: Any, model: LoadedModel) -> None:
    """Find the edit layer's table, or start building it where builds are allowed (a model with a
    shipped table, like the default, never builds)."""
    table_state = state.catalog.lookup_table(model, model.edit_layer)
    if table_state.status != "missing" or not may_build(state.settings.table_builds, model, model.edit_layer):
        return
    try:
        start_table_build(state, model, model.edit_layer)
    except ApiError as exc:
        log.warning("no table build for %s/%s: %s", model.id, model.edit_layer, exc.message)
