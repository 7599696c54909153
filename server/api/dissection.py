"""Dissection tables, units (with top images), brushes, and "which units are active here"."""

from __future__ import annotations

import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from PIL import Image

from dissect_core.gandissect import LayerTable
from dissect_core.report import masked_image, render_with_activations
from dissect_core.tables import table_json
from models.samples import MAX_SAMPLE_ID, z_tensor
from server.api.deps import ModelDep, StateDep, check_layer, require_token
from server.api.errors import ApiError, responses
from server.api.models import PNG
from server.catalog import LoadedModel
from server.errors import TablesBuilding
from server.schemas import ID_PATTERN, LAYER_PATTERN
from server.tables import editable, may_build

router = APIRouter(prefix="/api/models/{model_id}/layers/{layer}", tags=["dissection"],
                   dependencies=[Depends(require_token)])
ModelId = Annotated[str, Path(pattern=ID_PATTERN)]
Layer = Annotated[str, Path(pattern=LAYER_PATTERN)]
Unit = Annotated[int, Path(ge=0, le=65535)]


def _table(state: Any, model: LoadedModel, layer: str) -> LayerTable:
    """The layer's table if it exists (shipped or cached); reading never starts a build."""
    check_layer(model, layer)
    table_state = state.catalog.lookup_table(model, layer)
    if table_state.status == "ready" and table_state.table is not None:
        return table_state.table
    if table_state.status == "building":
        job = state.jobs.get(table_state.job) if table_state.job else None
        eta = f", about {job.eta_s:.0f} s left" if job is not None and job.eta_s is not None else ""
        where = f" (job {job.id}: /ws/jobs/{job.id})" if job is not None else ""
        raise TablesBuilding(f"dissection of {model.id}/{layer} is {table_state.progress:.0%} done{eta}{where}",
                             headers={"Retry-After": "5"})
    how = ("POST /api/dissect builds it" if may_build(state.settings.table_builds, model, layer) else
           "this server does not build it (GANPAINT_TABLE_BUILDS)" if editable(model, layer) else
           "the output layer cannot be painted")
    raise ApiError(404, "no_table", table_state.error or f"no dissection table for {model.id}/{layer}; {how}")


def _unit(table: LayerTable, unit: int) -> None:
    if unit >= table.units:
        raise ApiError(404, "unknown_unit", f"layer {table.layer} has {table.units} units")


async def _on_executor(state: Any, fn: Any) -> Any:
    return await state.executor.call(fn)


@router.get("/dissection", summary="The layer's dissection table: units, labels, IoU, levels, rankings",
            responses=responses(404, 503))
def dissection_table(model_id: ModelId, layer: Layer, state: StateDep,
                     model: ModelDep) -> dict[str, Any]:
    return table_json(_table(state, model, layer))


@router.get("/units/{unit}", summary="One unit: best labels, IoU, levels and top images",
            responses=responses(404, 503))
def unit_info(model_id: ModelId, layer: Layer, unit: Unit, state: StateDep,
              model: ModelDep) -> dict[str, Any]:
    table = _table(state, model, layer)
    _unit(table, unit)
    summary = table.unit_summary(unit)
    summary["top_image_strip"] = f"/api/models/{model.id}/layers/{layer}/units/{unit}/top.png"
    return summary


@router.get("/units/{unit}/top.png", summary="Strip of the unit's top images, dimmed outside its activation",
            response_class=Response, responses={**PNG, **responses(404, 503)})
async def unit_strip(model_id: ModelId, layer: Layer, unit: Unit, state: StateDep, model: ModelDep,
                     count: Annotated[int, Query(ge=1, le=20)] = 6) -> Response:
    table = _table(state, model, layer)
    _unit(table, unit)
    ids = [int(i) for i in table.top_images[unit][:count]]
    key = (model.sha256, layer, unit, count, float(table.level[unit]))
    cached = state.strips.get(key)
    if cached is not None:
        return Response(cached, media_type="image/png", headers={"Cache-Control": "max-age=3600", "X-Cache": "hit"})

    def work() -> bytes:
        images, acts = render_with_activations(model.generator, layer, ids, table.config.seed)
        strip = np.concatenate([masked_image(images[i], acts[i][unit], float(table.level[unit])) for i in ids], axis=1)
        buffer = io.BytesIO()
        Image.fromarray(strip).save(buffer, format="PNG")
        return buffer.getvalue()

    data = await _on_executor(state, work)
    state.strips.put(key, data)
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600", "X-Cache": "miss"})


@router.get("/brushes", summary="Concept brushes: ranked units (causal where measured) and insertion levels",
            responses=responses(404, 503))
def brushes(model_id: ModelId, layer: Layer, state: StateDep,
            model: ModelDep) -> dict[str, Any]:
    _table(state, model, layer)
    return {"model": model.id, "layer": layer, "units": model.generator.layer_shape(layer)[0],
            "brushes": state.catalog.brushes(model, layer)}


@router.get("/active", summary="Units most active at an image pixel of a sample (activation / level)",
            responses=responses(404, 503))
async def active_units(model_id: ModelId, layer: Layer, sample: Annotated[int, Query(ge=0, le=MAX_SAMPLE_ID)],
                       x: Annotated[int, Query(ge=0, le=4095)], y: Annotated[int, Query(ge=0, le=4095)],
                       state: StateDep, model: ModelDep,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    check_layer(model, layer)
    generator = model.generator
    if x >= generator.resolution or y >= generator.resolution:
        raise ApiError(422, "bad_pixel", f"x and y must be below the image size {generator.resolution}")
    table = state.catalog.table(model, layer)
    channels, h, w = generator.layer_shape(layer)
    cy, cx = y * h // generator.resolution, x * w // generator.resolution

    def work() -> list[float]:
        acts = generator.forward_to(layer, z_tensor([sample], generator.z_dim, device=state.device))
        return acts[0, :, cy, cx].float().cpu().tolist()

    values = np.array(await _on_executor(state, work))
    levels = table.level if table is not None else np.maximum(np.abs(values).max(), 1e-6) * np.ones(channels)
    score = values / np.maximum(levels, 1e-6)
    order = np.argsort(-score, kind="stable")[:limit]
    out = []
    for u in order:
        entry = {"unit": int(u), "activation": float(values[u]), "relative": float(score[u])}
        if table is not None:
            summary = table.unit_summary(int(u))
            entry.update(label=summary["label"], iou=summary["iou"])
        out.append(entry)
    return {"model": model.id, "layer": layer, "sample": sample, "cell": [cy, cx], "units": out}
