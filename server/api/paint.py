"""Websocket ``/ws/paint``, protocol v1 (docs/api.md).

Client -> server: JSON text ``{"v":1,"type":"edit","seq":N,"recipe":{...},"preview":false}``.
Server -> client: a JSON header ``{"type":"image","seq":N,...}`` immediately followed by the image as
one binary frame; or ``{"type":"error","seq":N|null,"code":...,"message":...}``. Recipes from the same
connection are latest-wins: one still queued when a newer one arrives is dropped without a reply.
Bad messages get an error and the connection stays open. Handshake: the Origin must be allowed
(close 1008 otherwise); with a server token, the client offers the subprotocols ``ganpaint.v1`` and
``token.<token>``, or has the session cookie of ``POST /api/login`` (``server.auth``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnected

from server.api.deps import load_model
from server.auth import accept_websocket
from server.errors import ServiceError, Superseded
from server.ratelimit import TokenBucket
from server.schemas import EditMessage, ErrorMessage, ImageHeader
from server.state import app_state

router = APIRouter()
log = logging.getLogger(__name__)
_EDIT = TypeAdapter(EditMessage)
_connections = itertools.count(1)
SUBPROTOCOL = "ganpaint.v1"


@router.websocket("/ws/paint")
async def paint(websocket: WebSocket) -> None:
    state = app_state(websocket)
    settings = state.settings
    if not await accept_websocket(websocket, SUBPROTOCOL):
        return
    client = f"ws-{next(_connections)}"
    metrics = state.metrics
    metrics.ws_connections.inc()
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()
    # fair share: past its rate a connection is read more slowly (TCP pushes back on the sender), so a
    # client sending as fast as it can costs the server no more than a fast painter does
    bucket = TokenBucket(settings.ws_messages_per_s, settings.ws_message_burst)

    async def send_error(seq: int | None, code: str, message: str) -> None:
        metrics.errors.labels(code=code).inc()
        async with send_lock:
            await websocket.send_text(ErrorMessage(seq=seq, code=code, message=message).model_dump_json())

    async def handle(message: EditMessage) -> None:
        received = time.monotonic()
        try:
            try:
                model = await load_model(state, message.recipe.model)
                result = await state.executor.render(model, message.recipe, message.preview, client)
            except Superseded:
                return  # counted in metrics; the newer recipe gets the answer
            except ServiceError as exc:
                await send_error(message.seq, exc.code, exc.message)
                return
            header = ImageHeader(seq=message.seq, format=result.format, width=result.width, height=result.height,
                                 bytes=len(result.data), timings=result.timings, batch=result.batch)
            async with send_lock:
                await websocket.send_text(header.model_dump_json())
                await websocket.send_bytes(result.data)
            metrics.edit_latency.observe(time.monotonic() - received)
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass  # the painter left while its image was made: nobody to tell

    try:
        while True:
            incoming = await websocket.receive()
            if incoming["type"] == "websocket.disconnect":
                break
            wait = bucket.take()
            if wait:
                metrics.ws_messages.labels(type="throttled").inc()
                await asyncio.sleep(wait)
            text = incoming.get("text")
            if text is None:
                metrics.ws_messages.labels(type="binary").inc()
                await send_error(None, "unsupported", "send recipes as JSON text frames")
                continue
            if len(text) > settings.ws_max_bytes:
                await send_error(None, "too_large", f"message over {settings.ws_max_bytes} bytes")
                continue
            try:
                message = _EDIT.validate_json(text)
            except ValidationError as exc:
                metrics.ws_messages.labels(type="invalid").inc()
                seq = _seq_of(text)
                first = exc.errors()[0]
                kind = "bad_json" if first["type"] == "json_invalid" else "invalid_message"
                where = ".".join(str(p) for p in first.get("loc", ()))
                await send_error(seq, kind, f"{where}: {first['msg']}" if where else first["msg"])
                continue
            metrics.ws_messages.labels(type="edit").inc()
            task = asyncio.create_task(handle(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except WebSocketDisconnect:
        pass
    finally:
        state.executor.cancel_client(client)
        for task in list(tasks):
            task.cancel()
        metrics.ws_connections.dec()


def _seq_of(text: str) -> int | None:
    """The ``seq`` of a message that failed validation, to answer it by; None when there is none.
    Nesting deeper than Python's recursion limit (``[[[[...``) is a bad message, not a crash."""
    try:
        seq = json.loads(text).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
