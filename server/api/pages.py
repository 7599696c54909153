"""The browser pages (static files from ``frontend/``; no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"
router = APIRouter(include_in_schema=False)
PAGES = {"/": "index.html", "/units": "units.html", "/cam": "cam.html", "/unit": "unit.html", "/login": "login.html"}


def _page(name: str):  # noqa: ANN202
    def serve() -> FileResponse:
        return FileResponse(FRONTEND_DIR / name, headers={"Cache-Control": "no-cache"})

    return serve


for route, file_name in PAGES.items():
    router.add_api_route(route, _page(file_name), methods=["GET"])
