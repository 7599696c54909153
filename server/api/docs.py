"""The interactive API docs (Swagger UI, ReDoc) from files installed with the server, never a CDN.

FastAPI's default ``/docs`` page loads Swagger UI from jsDelivr and is blank offline. The assets of
the ``fastapi-offline`` package (Swagger UI and ReDoc bundles) are served under ``/docs-assets``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

__all__ = ["router", "ASSETS_DIR", "ASSETS_URL"]

ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
ASSETS_URL = "/docs-assets"
router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="ganpaint API",
                               swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS_URL}/favicon.png")


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="ganpaint API",
                          redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
                          with_google_fonts=False)
