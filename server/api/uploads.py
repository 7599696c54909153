"""Paint your own picture: ``/api/uploads`` (GANPaint Studio's real-picture editing).

``POST /api/uploads`` (multipart ``image``, optional ``model``) decodes the picture safely
(``server.pictures``), stores it content-addressed (``server.uploads``), encodes it at once (the
encoder's preview, ``encoded.png``) and starts the inversion job (refine + adapt, progress on
``/ws/jobs/{id}``, cancel with ``DELETE /api/jobs/{id}``). The recipe ``{"upload": id}`` then paints
it over the websocket, ``POST /api/render`` and share links like a sample. ``GET /api/uploads``
lists the caller's own uploads (an owner cookie, HttpOnly); ``DELETE /api/uploads/{id}`` removes it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from models.imaging import to_png_bytes
from server.api.deps import StateDep, load_model, require_token
from server.api.errors import ApiError, responses
from server.catalog import LoadedModel
from server.jobs import Job, QueueFull
from server.pictures import decode_upload
from server.schemas import ID_PATTERN
from server.state import AppState
from server.uploads import ENCODED, INVERTED, UPLOAD_PATTERN, owner_key

router = APIRouter(prefix="/api", tags=["uploads"], dependencies=[Depends(require_token)])
OWNER_COOKIE = "ganpaint_owner"
FILES = ("picture.png", "encoded.png", "refined.png", "adapted.png")
REPORT = "report.json"
UploadId = Annotated[str, Path(pattern=UPLOAD_PATTERN)]


def _owner(request: Request) -> tuple[str, str | None]:
    """(the caller's owner key, a new cookie value to set when the caller had none)."""
    cookie = request.cookies.get(OWNER_COOKIE)
    if cookie and 16 <= len(cookie) <= 64:
        return owner_key(cookie), None
    fresh = secrets.token_urlsafe(24)
    return owner_key(fresh), fresh


def _with_cookie(response: JSONResponse, cookie: str | None, request: Request) -> JSONResponse:
    if cookie is not None:
        response.set_cookie(OWNER_COOKIE, cookie, max_age=365 * 24 * 3600, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


def _report(state: AppState, upload_id: str) -> dict[str, Any]:
    path = state.uploads.path(upload_id, REPORT)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _describe(state: AppState, meta: dict[str, Any], job: Job | None = None) -> dict[str, Any]:
    upload_id = meta["id"]
    stage = "inverted" if state.uploads.path(upload_id, INVERTED).is_file() else (
        "encoded" if state.uploads.path(upload_id, ENCODED).is_file() else "stored")
    files = [name for name in FILES if state.uploads.path(upload_id, name).is_file()]
    out = {**state.uploads.public(meta), "stage": stage, **_report(state, upload_id),
           "files": {name: f"/api/uploads/{upload_id}/files/{name}" for name in files}}
    if job is not None:
        out["job"] = job.describe()
    return out


def _encode(state: AppState, model: LoadedModel, upload_id: str, encoder: Any) -> dict[str, Any]:
    """The encoder's instant reconstruction (runs on the executor's thread): saved as the upload's
    ``encoded`` activations and ``encoded.png``; returns the report."""
    import time

    from models.inversion import encode, picture_tensor, psnr, suffix_with

    pixels = state.uploads.picture(upload_id)
    start = time.perf_counter()
    r = encode(encoder, picture_tensor(pixels, state.device))
    seconds = time.perf_counter() - start
    from models.imaging import to_uint8

    image = to_uint8(suffix_with(model.generator, model.edit_layer, r).clamp(-1, 1))[0]
    state.uploads.save_tensors(upload_id, ENCODED, {"r": r}, {"layer": model.edit_layer})
    state.uploads.path(upload_id, "encoded.png").write_bytes(to_png_bytes(image))
    report = {"psnr_db": {"encoded": round(psnr(pixels, image), 2)}, "seconds": {"encode": round(seconds, 4)}}
    state.uploads.path(upload_id, REPORT).write_text(json.dumps(report))
    return report


async def _encoder(state: AppState, model: LoadedModel) -> Any:
    """The model's picture encoder (loaded off the event loop); 422 ``no_encoder`` when it has none."""
    encoder = await asyncio.to_thread(state.catalog.encoder, model)
    if encoder is None:
        raise ApiError(422, "no_encoder", f"model {model.id!r} has no picture encoder; train one with "
                                          f"`ganpaint train encoder --model ...` (docs/real-images.md)")
    return encoder


def start_inversion(state: AppState, model: LoadedModel, upload_id: str, encoder: Any,
                    refine_steps: int, adapt_steps: int) -> Job:
    """The inversion of an upload as a job (the same upload and steps give the same job)."""
    params = {"upload": upload_id, "model": model.id, "refine_steps": refine_steps, "adapt_steps": adapt_steps}

    def work(job: Job) -> dict[str, Any]:
        from dissect_core.nethook import private_copy
        from models.inversion import FeatureLoss, invert
        from server.services import shared_classifier

        job.report(0.0, "loading")
        pixels = state.uploads.picture(upload_id)
        encoded = state.uploads.load_tensors(upload_id, ENCODED)
        try:
            feature_loss = FeatureLoss.from_classifier(private_copy(shared_classifier(state)))
        except Exception:  # no classifier installed: pixels only
            feature_loss = None
        generator = private_copy(model.generator)
        result = state.compute(invert, (generator, model.edit_layer, encoder, pixels, refine_steps, adapt_steps,
                                        feature_loss), {"encoded": encoded["r"] if encoded is not None else None},
                               progress=lambda stage, fraction: job.report(fraction, stage), cancelled=job.cancelled,
                               note=job.note)
        if state.uploads.get(upload_id) is None:
            return {"upload": upload_id, "removed": True}
        state.uploads.save_tensors(upload_id, INVERTED, {"r": result.refined, **result.adaptation.state_dict()},
                                   {"layer": model.edit_layer, "refine_steps": str(refine_steps),
                                    "adapt_steps": str(adapt_steps)})
        for name in ("refined", "adapted"):
            state.uploads.path(upload_id, f"{name}.png").write_bytes(to_png_bytes(result.images[name]))
        report = result.report()
        state.uploads.path(upload_id, REPORT).write_text(json.dumps(report))
        return {"upload": upload_id, **report}

    try:
        return state.jobs.submit("invert", params, work)
    except QueueFull as exc:
        raise ApiError(503, "busy", str(exc), {"Retry-After": "5"}) from None


@router.post("/uploads", status_code=201, summary="Upload a picture to paint (encoded at once, inverted as a job)",
             responses=responses(404, 413, 503))
async def upload_picture(
    request: Request, state: StateDep,
    image: Annotated[UploadFile, File(description="PNG or JPEG (bounded size); centre-cropped to a square")],
    model: Annotated[str | None, Form(pattern=ID_PATTERN, description="model to paint it with; default: the server's")] = None,
) -> JSONResponse:
    loaded = await load_model(state, model or state.settings.default_model)
    encoder = await _encoder(state, loaded)
    data = await image.read(state.settings.max_upload_bytes + 1)
    if len(data) > state.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"uploads are limited to {state.settings.max_upload_bytes:,} bytes")
    pixels = await asyncio.to_thread(decode_upload, data, loaded.generator.resolution)
    owner, cookie = _owner(request)
    meta, _ = await asyncio.to_thread(state.uploads.add, loaded.id, pixels, owner, image.filename or "")
    upload_id = meta["id"]
    if not state.uploads.path(upload_id, ENCODED).is_file():
        try:
            await state.executor.call(lambda: _encode(state, loaded, upload_id, encoder))
        except Exception:
            await asyncio.to_thread(state.uploads.remove, upload_id, owner)  # nothing half-made is left
            raise
    job = None
    if not state.uploads.path(upload_id, INVERTED).is_file():
        job = start_inversion(state, loaded, upload_id, encoder, state.settings.invert_refine_steps,
                              state.settings.invert_adapt_steps)
    body = _describe(state, meta, job)
    return _with_cookie(JSONResponse(body, status_code=201, headers={"Location": f"/api/uploads/{upload_id}"}),
                        cookie, request)


@router.get("/uploads", summary="The caller's own uploads, newest first")
def list_uploads(request: Request, state: StateDep) -> JSONResponse:
    owner, cookie = _owner(request)
    body = {"uploads": [_describe(state, meta) for meta in state.uploads.list(owner)]}
    return _with_cookie(JSONResponse(body), cookie, request)


def _meta(state: AppState, upload_id: str) -> dict[str, Any]:
    meta = state.uploads.get(upload_id)
    if meta is None:
        raise ApiError(404, "unknown_upload", f"no upload {upload_id} (never uploaded, deleted or expired)")
    return meta


@router.get("/uploads/{upload_id}", summary="An upload: its stage, reconstruction PSNRs and files",
            responses=responses(404))
def upload_status(upload_id: UploadId, state: StateDep) -> dict[str, Any]:
    return _describe(state, _meta(state, upload_id))


@router.get("/uploads/{upload_id}/files/{name}", summary="The picture or a reconstruction of it (PNG)",
            response_class=FileResponse, responses=responses(404))
def upload_file(upload_id: UploadId, name: Annotated[str, Path(pattern=r"^[a-z]+\.png$")],
                state: StateDep) -> FileResponse:
    _meta(state, upload_id)
    path = state.uploads.path(upload_id, name)
    if name not in FILES or not path.is_file():
        raise ApiError(404, "no_file", f"upload {upload_id} has no file {name!r} (yet)")
    return FileResponse(path, media_type="image/png")


@router.post("/uploads/{upload_id}/invert", status_code=202,
             summary="(Re)start an upload's inversion (after a restart interrupted it, or to redo it)",
             responses=responses(404, 503))
async def invert_upload(upload_id: UploadId, state: StateDep) -> JSONResponse:
    """The job that refines and adapts the upload with the server's steps; the running or finished one
    when there is one (the same parameters are the same job)."""
    meta = _meta(state, upload_id)
    loaded = await load_model(state, meta["model"])
    encoder = await _encoder(state, loaded)
    if not state.uploads.path(upload_id, ENCODED).is_file():
        await state.executor.call(lambda: _encode(state, loaded, upload_id, encoder))
    job = start_inversion(state, loaded, upload_id, encoder, state.settings.invert_refine_steps,
                          state.settings.invert_adapt_steps)
    return JSONResponse(_describe(state, meta, job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@router.delete("/uploads/{upload_id}", summary="Remove one of the caller's uploads", responses=responses(404))
def delete_upload(upload_id: UploadId, request: Request, state: StateDep) -> dict[str, Any]:
    owner, _ = _owner(request)
    if not state.uploads.remove(upload_id, owner):
        raise ApiError(404, "unknown_upload", f"no upload {upload_id} of yours")
    return {"id": upload_id, "removed": True}
