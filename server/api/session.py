"""Browser sign-in for token mode: ``POST /api/login`` sets the session cookie, ``/api/logout`` clears it.

Programs keep using ``Authorization: Bearer``; pages cannot (``<img src>`` sends no header), so the
login page exchanges the token once for an HttpOnly, SameSite=Strict cookie (``server.auth``).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import get_state
from server.api.errors import ApiError, responses
from server.auth import SESSION_COOKIE, session_value, token_supplied

router = APIRouter(tags=["session"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=512)


class SessionState(BaseModel):
    token_required: bool
    authenticated: bool


@router.get("/api/session", summary="Whether the server needs a token and this browser has signed in")
def session(request: Request, state=Depends(get_state)) -> SessionState:  # noqa: ANN001
    token = state.settings.token.get_secret_value() if state.settings.token else None
    return SessionState(token_required=token is not None,
                        authenticated=token_supplied(token, request.headers, request.cookies))


@router.post("/api/login", status_code=204, response_class=Response, responses=responses(401),
             summary="Exchange the server token for a session cookie (HttpOnly, SameSite=Strict)")
def login(body: LoginRequest, request: Request, state=Depends(get_state)) -> Response:  # noqa: ANN001
    token = state.settings.token.get_secret_value() if state.settings.token else None
    response = Response(status_code=204)
    if token is None:
        return response  # nothing to sign in to
    if not hmac.compare_digest(body.token.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "wrong token")
    response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.post("/api/logout", status_code=204, response_class=Response, summary="Clear the session cookie")
def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
