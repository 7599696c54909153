"""Request dependencies: the app state, the token check, model and layer lookup."""

from __future__ import annotations

import torch
from fastapi import Depends, Request

from server.api.errors import ApiError
from server.auth import token_supplied
from server.catalog import LoadedModel, UnknownModel
from models.checkpoints import CheckpointError
from models.zoo import ZooError

__all__ = ["get_state", "require_token", "get_model", "get_classifier", "check_layer"]


def get_state(request: Request):  # noqa: ANN201 - AppState, imported lazily to avoid a cycle
    return request.app.state.ganpaint


def require_token(request: Request, state=Depends(get_state)) -> None:  # noqa: ANN001
    token = state.settings.token
    if token is None:
        return
    if not token_supplied(token.get_secret_value(), request.headers, request.cookies):
        raise ApiError(401, "unauthorized", "a valid token is required (Authorization: Bearer <token>, or sign "
                                            "in at /login for the session cookie)", {"WWW-Authenticate": "Bearer"})


def get_classifier(state=Depends(get_state)) -> torch.nn.Module:  # noqa: ANN001
    """The app's classifier (``GANPAINT_CLASSIFIER``), loaded on first use; 404 when it is not installed."""
    from server.services import shared_classifier

    try:
        return shared_classifier(state)
    except (ZooError, CheckpointError) as exc:
        raise ApiError(404, "no_classifier", str(exc)) from None


def get_model(model_id: str, state=Depends(get_state)) -> LoadedModel:  # noqa: ANN001
    try:
        return state.catalog.get(model_id)
    except UnknownModel as exc:
        raise ApiError(404, "unknown_model", str(exc)) from None
    except (CheckpointError, ZooError) as exc:
        raise ApiError(404, "model_unavailable", f"model {model_id!r} cannot be loaded: {exc}") from None


def check_layer(model: LoadedModel, layer: str) -> None:
    if layer not in model.generator.layer_names:
        raise ApiError(404, "unknown_layer", f"model {model.id!r} has no layer {layer!r}; "
                                             f"layers are {', '.join(model.generator.layer_names)}")
