"""The server token: one check for REST, websockets and the browser.

With ``GANPAINT_TOKEN`` set, every API call and websocket needs it. Programs send it as
``Authorization: Bearer <token>`` (REST) or offer the subprotocol ``token.<token>`` (websocket).
Browsers cannot put a header on ``<img src>`` requests, so ``POST /api/login`` with the token opens a
*session*: a random id (not derived from the token) kept by the server with an expiry, sent as a
cookie (HttpOnly, so page scripts never see it; SameSite=Strict, so other sites cannot make the
browser use it) that is accepted beside the header. ``POST /api/logout`` revokes the id, sessions
expire after ``session_ttl_s``, and sign-in attempts are rate limited per client address.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.websockets import WebSocket

__all__ = ["SESSION_COOKIE", "SessionStore", "session_token", "token_supplied", "accept_websocket"]

SESSION_COOKIE = "ganpaint_session"


class SessionStore:
    """Signed-in browsers: random ids with an expiry; the oldest dropped beyond ``max_sessions``."""

    def __init__(self, ttl_s: float, max_sessions: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s, self.max_sessions, self._clock = ttl_s, max_sessions, clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def open(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[session] = self._clock() + self.ttl_s
            while len(self._expiry) > self.max_sessions:
                self._expiry.popitem(last=False)
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        with self._lock:
            expiry = self._expiry.get(session)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[session]
                return False
            return True

    def revoke(self, session: str | None) -> None:
        with self._lock:
            self._expiry.pop(session or "", None)

    def __len__(self) -> int:
        return len(self._expiry)


def session_token(settings: Any) -> str | None:
    """The server token, or None when the server runs without one."""
    return settings.token.get_secret_value() if settings.token else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def token_supplied(token: str | None, headers: Mapping[str, str], cookies: Mapping[str, str],
                   subprotocols: Sequence[str] = (), sessions: SessionStore | None = None) -> bool:
    """Whether a request carries the token: Bearer header, ``token.`` subprotocol or a live session."""
    if token is None:
        return True
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer ") and _same(header[7:], token):
        return True
    offered = next((p[len("token."):] for p in subprotocols if p.startswith("token.")), None)
    if offered is not None and _same(offered, token):
        return True
    return sessions is not None and sessions.valid(cookies.get(SESSION_COOKIE))


async def accept_websocket(websocket: WebSocket, subprotocol: str | None = None) -> bool:
    """The handshake every websocket uses: Origin allowed, token present (when the server has one).

    A refusal accepts and then closes with 1008 and a reason that says what to change: refused at the
    handshake instead, a browser sees only "HTTP 403" as a close code 1006 and cannot tell a wrong
    host name from a network failure. Nothing is read or sent before the close."""
    app = websocket.app.state.ganpaint  # (server.state imports this module: no import of it here)
    settings = app.settings
    offered = websocket.scope.get("subprotocols") or []
    origin = websocket.headers.get("origin")
    reason = None
    if not settings.origin_allowed(origin):
        reason = f"origin {(origin or '')[:60]} not allowed; add it to GANPAINT_ALLOWED_ORIGINS"
    else:
        token = session_token(settings)
        if not token_supplied(token, websocket.headers, websocket.cookies, offered, app.sessions):
            reason = "token required: sign in at /login"
    await websocket.accept(subprotocol=subprotocol if subprotocol in offered else None)
    if reason is not None:
        await websocket.close(code=1008, reason=reason)
        return False
    return True
