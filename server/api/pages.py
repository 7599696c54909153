"""The browser pages (static files from ``frontend/``; no CDN, no build step).

Installed, the pages are the package data of ``server.frontend`` (``frontend/`` mapped into the
server package by pyproject.toml), found with importlib.resources wherever the wheel lives; in a
source checkout without an install they are read from ``frontend/`` beside the packages.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["frontend_dir", "router", "PAGES"]

PAGES = {"/": "index.html", "/units": "units.html", "/cam": "cam.html", "/unit": "unit.html", "/login": "login.html"}


def frontend_dir() -> Path:
    """The directory holding ``index.html`` and the ``css/`` and ``js/`` folders."""
    try:
        packaged = Path(str(resources.files("server.frontend")))
        if (packaged / "index.html").is_file():
            return packaged
    except ModuleNotFoundError:
        pass
    source = Path(__file__).resolve().parents[2] / "frontend"
    if (source / "index.html").is_file():
        return source
    raise RuntimeError("the browser pages (server.frontend) are not installed")


FRONTEND_DIR = frontend_dir()
router = APIRouter(include_in_schema=False)


def _page(name: str):
    def serve() -> FileResponse:
        return FileResponse(FRONTEND_DIR / name, headers={"Cache-Control": "no-cache"})

    return serve


for route, file_name in PAGES.items():
    router.add_api_route(route, _page(file_name), methods=["GET"])
