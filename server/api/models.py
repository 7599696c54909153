"""Models, their layers, sample pages, sample images and stateless recipe rendering."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from models.samples import MAX_SAMPLE_ID
from server.api.deps import ModelDep, StateDep, load_model, require_token
from server.api.errors import responses
from server.api.views import ModelView, SamplePage
from server.catalog import LoadedModel
from server.schemas import ID_PATTERN, Recipe

router = APIRouter(prefix="/api", tags=["models"], dependencies=[Depends(require_token)])

ModelId = Annotated[str, Path(pattern=ID_PATTERN, description="model id (registry id, never a path)")]
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


async def render_png(state: Any, model: LoadedModel, recipe: Recipe) -> Response:
    result = await state.executor.render(model, recipe)
    return Response(result.data, media_type="image/png",
                    headers={"X-Render-Ms": str(result.timings["compute_ms"]), "Cache-Control": "no-store"})


@router.get("/models", summary="Models offered by this server", responses=responses())
def list_models(state: StateDep) -> list[dict[str, Any]]:
    loaded = {m.id: m for m in state.catalog.loaded()}
    out = []
    for model_id in state.catalog.available():
        entry = loaded[model_id].describe() if model_id in loaded else {"id": model_id, "loaded": False}
        entry["default"] = model_id == state.settings.default_model
        out.append(entry)
    return out


@router.get("/models/{model_id}", summary="One model: resolution, z size, layers and their shapes",
            responses=responses(404))
def describe_model(model_id: ModelId, model: ModelDep) -> ModelView:
    return ModelView(**model.describe())


@router.get("/models/{model_id}/samples", summary="A page of sample ids (in order, or random with a seed)",
            responses=responses(404))
def sample_page(model_id: ModelId, model: ModelDep, offset: Annotated[int, Query(ge=0, le=MAX_SAMPLE_ID)] = 0,
                limit: Annotated[int, Query(ge=1, le=256)] = 16, random: bool = False,
                seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> SamplePage:
    if random:
        ids = np.random.default_rng(seed).choice(MAX_SAMPLE_ID + 1, size=limit, replace=False).tolist()
    else:
        ids = list(range(offset, min(offset + limit, MAX_SAMPLE_ID + 1)))
    return SamplePage(model=model.id, ids=ids, max_id=MAX_SAMPLE_ID)


@router.get("/models/{model_id}/samples/{sample_id}.png", summary="The unedited image of a sample",
            response_class=Response, responses={**PNG, **responses(404, 503)})
async def sample_image(model_id: ModelId, sample_id: Annotated[int, Path(ge=0, le=MAX_SAMPLE_ID)],
                       state: StateDep, model: ModelDep) -> Response:
    return await render_png(state, model, Recipe(model=model.id, sample=sample_id))


@router.post("/render", summary="Render an edit recipe (stateless) to PNG", response_class=Response,
             responses={**PNG, **responses(400, 404, 413, 503)})
async def render(recipe: Recipe, state: StateDep) -> Response:
    model = await load_model(state, recipe.model)
    return await render_png(state, model, recipe)
