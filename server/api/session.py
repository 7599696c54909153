"""Browser sign-in for token mode: ``POST /api/login`` opens a session, ``/api/logout`` revokes it.

Programs keep using ``Authorization: Bearer``; pages cannot (``<img src>`` sends no header), so the
login page exchanges the token once for a session cookie (``server.auth``): a random id the server
keeps until it expires (``GANPAINT_SESSION_TTL_S``) or the browser logs out. Sign-in attempts are
rate limited per client address (``GANPAINT_LOGIN_PER_MINUTE``): past it, 429 with Retry-After.
"""

from __future__ import annotations

import hmac
import math

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import StateDep, has_token
from server.api.errors import ApiError, responses
from server.auth import SESSION_COOKIE, session_token

router = APIRouter(tags=["session"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=512)


class SessionState(BaseModel):
    token_required: bool
    authenticated: bool


@router.get("/api/session", summary="Whether the server needs a token and this browser has signed in")
def session(request: Request, state: StateDep) -> SessionState:
    return SessionState(token_required=session_token(state.settings) is not None,
                        authenticated=has_token(request, state))


@router.post("/api/login", status_code=204, response_class=Response, responses=responses(401, 429),
             summary="Exchange the server token for a session cookie (HttpOnly, SameSite=Strict, expiring)")
def login(body: LoginRequest, request: Request, state: StateDep) -> Response:
    token = session_token(state.settings)
    response = Response(status_code=204)
    if token is None:
        return response  # nothing to sign in to
    wait = state.login_attempts.try_take(request.client.host if request.client else "unknown")
    if wait:
        raise ApiError(429, "too_many_attempts", f"too many sign-in attempts; try again in {math.ceil(wait)} s",
                       {"Retry-After": str(math.ceil(wait))})
    if not hmac.compare_digest(body.token.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "wrong token")
    state.sessions.revoke(request.cookies.get(SESSION_COOKIE))
    response.set_cookie(SESSION_COOKIE, state.sessions.open(), max_age=int(state.settings.session_ttl_s),
                        httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https")
    return response


@router.post("/api/logout", status_code=204, response_class=Response,
             summary="Revoke this browser's session and clear its cookie")
def logout(request: Request, state: StateDep) -> Response:
    state.sessions.revoke(request.cookies.get(SESSION_COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
