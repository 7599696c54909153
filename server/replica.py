"""Which server process answered: ``x-ganpaint-replica`` on every response and websocket handshake.

Behind a load balancer or Ray Serve several processes answer one address; an operator reading a
log, or a test checking that painters were spread, needs to know which one served a request. The
id is opaque (a hash of host, process and start time), so it names a process without describing it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from typing import Any

__all__ = ["REPLICA_HEADER", "replica_id", "ReplicaHeader"]

REPLICA_HEADER = "x-ganpaint-replica"
_STARTED = time.time()


def replica_id() -> str:
    """This process's id (stable for its life)."""
    raw = f"{socket.gethostname()}:{os.getpid()}:{_STARTED}".encode()
    return hashlib.sha256(raw).hexdigest()[:12]


class ReplicaHeader:
    """Pure ASGI middleware adding the header to HTTP responses and websocket accepts."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica_id().encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)
