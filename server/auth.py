"""The server token: one check for REST, websockets and the browser.

With ``GANPAINT_TOKEN`` set, every API call and websocket needs it. Programs send it as
``Authorization: Bearer <token>`` (REST) or offer the subprotocol ``token.<token>`` (websocket).
Browsers cannot put a header on ``<img src>`` requests, so ``POST /api/login`` with the token sets a
session cookie (HttpOnly, so page scripts never see it; SameSite=Strict, so other sites cannot make
the browser use it) that is accepted beside the header. The cookie holds an HMAC of the token,
not the token itself, and changes when the token does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from starlette.websockets import WebSocket

__all__ = ["SESSION_COOKIE", "session_value", "token_supplied", "accept_websocket"]

SESSION_COOKIE = "ganpaint_session"
_SESSION_CONTEXT = b"ganpaint-session-v1"


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``."""
    return hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def token_supplied(token: str | None, headers: Mapping[str, str], cookies: Mapping[str, str],
                   subprotocols: Sequence[str] = ()) -> bool:
    """Whether a request carries the token: Bearer header, ``token.`` subprotocol or session cookie."""
    if token is None:
        return True
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer ") and _same(header[7:], token):
        return True
    offered = next((p[len("token."):] for p in subprotocols if p.startswith("token.")), None)
    if offered is not None and _same(offered, token):
        return True
    cookie = cookies.get(SESSION_COOKIE)
    return cookie is not None and _same(cookie, session_value(token))


async def accept_websocket(websocket: WebSocket, subprotocol: str | None = None) -> bool:
    """The handshake every websocket uses: Origin allowed, token present (when the server has one),
    then accept (with ``subprotocol`` if the client offered it). Refusals close with 1008."""
    settings = websocket.app.state.ganpaint.settings
    if not settings.origin_allowed(websocket.headers.get("origin")):
        await websocket.close(code=1008, reason="origin not allowed")
        return False
    token = settings.token.get_secret_value() if settings.token else None
    offered = websocket.scope.get("subprotocols") or []
    if not token_supplied(token, websocket.headers, websocket.cookies, offered):
        await websocket.close(code=1008, reason="missing or wrong token")
        return False
    await websocket.accept(subprotocol=subprotocol if subprotocol in offered else None)
    return True
