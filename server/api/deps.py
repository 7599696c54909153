"""Request dependencies: the app state, the token check, model and layer lookup."""

from __future__ import annotations

import asyncio
from typing import Annotated

import torch
from fastapi import Depends, Request

from models.checkpoints import CheckpointError
from models.zoo import ZooError
from server.api.errors import ApiError
from server.auth import session_token, token_supplied
from server.catalog import LoadedModel
from server.state import AppState, app_state

__all__ = ["StateDep", "ModelDep", "ClassifierDep", "has_token", "require_token", "get_model", "load_model", "get_classifier", "check_layer"]


StateDep = Annotated[AppState, Depends(app_state)]


def has_token(request: Request, state: StateDep) -> bool:
    """Whether the request may see everything: no server token, or it carries it (header or session)."""
    return token_supplied(session_token(state.settings), request.headers, request.cookies, sessions=state.sessions)


def require_token(request: Request, state: StateDep) -> None:
    if not has_token(request, state):
        raise ApiError(401, "unauthorized", "a valid token is required (Authorization: Bearer <token>, or sign "
                                            "in at /login for the session cookie)", {"WWW-Authenticate": "Bearer"})


def get_classifier(state: StateDep) -> torch.nn.Module:
    """The app's classifier (``GANPAINT_CLASSIFIER``), loaded on first use; 404 when it is not installed."""
    from server.services import shared_classifier

    try:
        return shared_classifier(state)
    except (ZooError, CheckpointError) as exc:
        raise ApiError(404, "no_classifier", str(exc)) from None


async def get_model(model_id: str, state: StateDep) -> LoadedModel:
    """The model (``UnknownModel`` / ``ModelUnavailable`` become 404s); its first load reads the weights
    on a worker thread, never on the event loop."""
    return await load_model(state, model_id)


async def load_model(state: AppState, model_id: str) -> LoadedModel:
    loaded = state.catalog.cached(model_id)
    if loaded is not None:
        return loaded
    return await asyncio.to_thread(_first_load, state, model_id)


def _first_load(state: AppState, model_id: str) -> LoadedModel:
    """Load a model and find (or queue the build of) its edit layer's table."""
    from server.tables import ensure_edit_table

    model = state.catalog.get(model_id)
    ensure_edit_table(state, model)
    return model


def check_layer(model: LoadedModel, layer: str) -> None:
    if layer not in model.generator.layer_names:
        raise ApiError(404, "unknown_layer", f"model {model.id!r} has no layer {layer!r}; "
                                             f"layers are {', '.join(model.generator.layer_names)}")


ModelDep = Annotated[LoadedModel, Depends(get_model)]
ClassifierDep = Annotated[torch.nn.Module, Depends(get_classifier)]
