"""Request body limits that answer in the API's one error shape.

A pure ASGI middleware: a body whose ``Content-Length`` is over the limit is refused before a byte
of it is read; a body without one (chunked) is counted as it arrives and refused once it passes the
limit. Either way the answer is ``413 {"error": {"code": "too_large", ...}}`` like every other error
(Starlette's own limiter answers plain text, which the pages could not read). Upload routes (photos
for CAM, pictures to paint) get a larger limit than JSON routes.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_body

__all__ = ["BodyLimit"]


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, upload_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.upload_limits = dict(upload_limits or {})
        """Path -> limit for routes that take files."""

    def limit_for(self, path: str) -> int:
        return self.upload_limits.get(path.rstrip("/"), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await self._refuse(scope, receive, send, 400, "bad_request", "Content-Length is not a number")
                return
            if too_large:
                await self._refuse(scope, receive, send, 413, "too_large", f"request bodies are limited to {limit:,} bytes")
                return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            # past the limit: answer 413 now and tell the app the client left (an exception raised
            # here would reach the app's body parser, which answers it as a 400)
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await self._refuse(scope, receive, send, 413, "too_large",
                                       f"request bodies are limited to {limit:,} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a refusal the app's own answer is dropped
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
        await JSONResponse(error_body(code, message), status_code=status, headers={"Connection": "close"})(scope, receive, send)
