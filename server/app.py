"""App factory: settings -> catalog + executor + metrics -> FastAPI app with routers.

The lifespan loads the default model (a missing or corrupt zoo file fails startup with a message
naming the file), starts the inference executor, and finds the edit layer's dissection table (or
queues its build as a job) so the app answers (``/readyz`` says what is still building) while it works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api import cam, dissection, docs, health, jobs, models, pages, paint, session, uploads
from server.bodylimit import BodyLimit
from server.errors import ServiceError, error_body, http_headers
from server.replica import ReplicaHeader
from server.settings import Settings
from server.state import AppState
from server.tables import ensure_edit_table

__all__ = ["create_app", "AppState"]

log = logging.getLogger("ganpaint")
UPLOAD_ROUTES = ("/api/cam", "/api/uploads")
"""Routes that take pictures: their bodies may be up to ``max_upload_bytes``."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = state.catalog.get(settings.default_model)  # raises (startup fails) on a bad zoo file
        state.executor.start()
        await asyncio.to_thread(ensure_edit_table, state, model)
        state.lifespans += 1
        state.ready, state.draining = True, False
        log.info("ganpaint ready: model %s on %s", model.id, state.device)
        try:
            yield
        finally:
            state.lifespans -= 1
            if state.lifespans == 0:
                state.draining = True
                state.jobs.shutdown()
                state.executor.stop()

    app = FastAPI(
        title="ganpaint", version="1.0",
        description="GAN painting studio API: models, samples, dissection tables, brushes and the painting websocket "
                    "(protocol in docs/api.md).",
        lifespan=lifespan, docs_url=None, redoc_url=None,  # served from local files by server.api.docs
    )
    app.state.ganpaint = state
    app.add_middleware(ReplicaHeader)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       upload_limits={path: settings.max_upload_bytes for path in UPLOAD_ROUTES})
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=http_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body("invalid_request", f"{where}: {first.get('msg', 'invalid')}",
                                       details=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]]),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(dissection.router)
    app.include_router(paint.router)
    app.include_router(cam.router)
    app.include_router(uploads.router)
    app.include_router(jobs.router)
    app.include_router(jobs.ws_router)
    app.include_router(session.router)
    app.include_router(pages.router)
    from fastapi.staticfiles import StaticFiles

    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=pages.FRONTEND_DIR), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS_DIR), name="docs-assets")
    return app
