"""Request dependencies: the app state, the token check, model and layer lookup."""

from __future__ import annotations

import asyncio

import torch
from fastapi import Depends, Request

from server.api.errors import ApiError
from server.auth import session_token, token_supplied
from server.catalog import LoadedModel
from models.checkpoints import CheckpointError
from models.zoo import ZooError

__all__ = ["get_state", "has_token", "require_token", "get_model", "load_model", "get_classifier", "check_layer"]


def get_state(request: Request):  # noqa: ANN201 - AppState, imported lazily to avoid a cycle
    return request.app.state.ganpaint


def has_token(request: Request, state=Depends(get_state)) -> bool:  # noqa: ANN001
    """Whether the request may see everything: no server token, or it carries it (header or session)."""
    return token_supplied(session_token(state.settings), request.headers, request.cookies, sessions=state.sessions)


def require_token(request: Request, state=Depends(get_state)) -> None:  # noqa: ANN001
    if not has_token(request, state):
        raise ApiError(401, "unauthorized", "a valid token is required (Authorization: Bearer <token>, or sign "
                                            "in at /login for the session cookie)", {"WWW-Authenticate": "Bearer"})


def get_classifier(state=Depends(get_state)) -> torch.nn.Module:  # noqa: ANN001
    """The app's classifier (``GANPAINT_CLASSIFIER``), loaded on first use; 404 when it is not installed."""
    from server.services import shared_classifier

    try:
        return shared_classifier(state)
    except (ZooError, CheckpointError) as exc:
        raise ApiError(404, "no_classifier", str(exc)) from None


async def get_model(model_id: str, state=Depends(get_state)) -> LoadedModel:  # noqa: ANN001
    """The model (``UnknownModel`` / ``ModelUnavailable`` become 404s); its first load reads the weights
    on a worker thread, never on the event loop."""
    return await load_model(state, model_id)


async def load_model(state, model_id: str) -> LoadedModel:  # noqa: ANN001
    loaded = state.catalog.cached(model_id)
    if loaded is not None:
        return loaded
    return await asyncio.to_thread(_first_load, state, model_id)


def _first_load(state, model_id: str) -> LoadedModel:  # noqa: ANN001
    """Load a model and find (or queue the build of) its edit layer's table."""
    from server.tables import ensure_edit_table

    model = state.catalog.get(model_id)
    ensure_edit_table(state, model)
    return model


def check_layer(model: LoadedModel, layer: str) -> None:
    if layer not in model.generator.layer_names:
        raise ApiError(404, "unknown_layer", f"model {model.id!r} has no layer {layer!r}; "
                                             f"layers are {', '.join(model.generator.layer_names)}")
