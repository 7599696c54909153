"""Jobs API: start feature visualisation, Network Dissection, top-k and GAN dissection as jobs.

``POST /api/{featviz,netdissect,topk,dissect}`` -> 202 with the job (the same parameters give the
same job); ``GET /api/jobs/{id}`` status and result; ``GET /api/jobs/{id}/files/{name}`` result files;
``DELETE /api/jobs/{id}`` cancels; websocket ``/ws/jobs/{id}`` streams the job's state on every change.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import torch
from fastapi import APIRouter, Depends, Path, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dissect_core.gandissect import DissectConfig
from dissect_core.nethook import private_copy
from server.api.deps import ClassifierDep, StateDep, require_token
from server.api.errors import ApiError, responses
from server.api.views import JobView
from server.auth import accept_websocket
from server.jobs import TERMINAL, Job, QueueFull
from server.schemas import ID_PATTERN, LAYER_PATTERN
from server.services import ensure_world_probe, featviz_task, world_images, write_netdissect_outputs
from server.state import app_state
from server.tables import start_table_build

router = APIRouter(prefix="/api", tags=["jobs"], dependencies=[Depends(require_token)])
ws_router = APIRouter()
CLASSIFIER_LAYER = r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class FeatvizRequest(Strict):
    layer: str = Field("features.block4", pattern=CLASSIFIER_LAYER)
    units: list[Annotated[int, Field(ge=0, le=4095)]] = Field(min_length=1, max_length=16)
    param: Literal["fft", "pixel", "gan"] = "fft"
    steps: int = Field(256, ge=1, le=2048)
    lr: float = Field(0.05, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class NetDissectRequest(Strict):
    layer: str = Field("features.block4", pattern=CLASSIFIER_LAYER)
    samples: int = Field(1000, ge=10, le=20_000)
    quantile: float = Field(0.005, gt=0, lt=0.5)


class TopkRequest(Strict):
    layer: str = Field("features.block4", pattern=CLASSIFIER_LAYER)
    count: int = Field(2000, ge=10, le=20_000)
    k: int = Field(12, ge=1, le=32)
    units: list[Annotated[int, Field(ge=0, le=4095)]] = Field(min_length=1, max_length=64)


class DissectRequest(Strict):
    model: str = Field(pattern=ID_PATTERN)
    layer: str = Field(pattern=LAYER_PATTERN)
    samples: int | None = Field(None, ge=10, le=20_000)
    """Default: the server's (``GANPAINT_DISSECT_SAMPLES``), so the result is the painter's table."""
    quantile: float = Field(DissectConfig.quantile, gt=0, lt=0.5)
    threshold: Literal["quantile", "iqr"] | None = None
    """``iqr``: each unit's most informative level (gandissect's GAN default); ``quantile``: top ``quantile``;
    default: the server's."""


def _check_layer(model: torch.nn.Module, layer: str) -> None:
    if layer not in dict(model.named_modules()):
        raise ApiError(422, "unknown_layer", f"the classifier has no layer {layer!r}")


def _submit(state: Any, kind: str, params: dict[str, Any], work: Any) -> JSONResponse:
    try:
        job = state.jobs.submit(kind, params, work)
    except QueueFull as exc:
        raise ApiError(503, "busy", str(exc), {"Retry-After": "5"}) from None
    return JSONResponse(job.describe(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def _progress(job: Job) -> Any:
    """A ``(stage, done, total)`` progress callback that also honours cancellation."""
    return lambda stage, done, total: job.report(done / max(total, 1), stage)


@router.post("/featviz", status_code=202, summary="Feature visualisation of classifier units (a job)",
             responses=responses(422, 503))
def start_featviz(request: FeatvizRequest, state: StateDep,
                  classifier: ClassifierDep) -> JSONResponse:
    _check_layer(classifier, request.layer)

    def work(job: Job) -> dict[str, Any]:
        from PIL import Image

        from dissect_core.featviz import to_uint8_grid

        generator = None
        if request.param == "gan":
            generator = private_copy(state.catalog.get(state.settings.default_model).generator)
        result = state.compute(featviz_task, (private_copy(classifier), request.layer, request.units, request.param,
                                              request.steps, request.lr, request.seed, generator),
                               progress=lambda stage, fraction: job.report(fraction, stage), cancelled=job.cancelled,
                               note=job.note)
        Image.fromarray(to_uint8_grid(result.images)).save(job.directory / "featviz.png")
        return {"image": "featviz.png", "units": request.units, "start_objective": result.start_value,
                "final_objective": result.final_value}

    return _submit(state, "featviz", request.model_dump(), work)


@router.post("/netdissect", status_code=202, summary="Network Dissection of the classifier on the world probe set",
             responses=responses(422, 503))
def start_netdissect(request: NetDissectRequest, state: StateDep,
                     classifier: ClassifierDep) -> JSONResponse:
    _check_layer(classifier, request.layer)

    def work(job: Job) -> dict[str, Any]:
        from dissect_core.datasets.broden import BrodenDataset
        from dissect_core.netdissect import NetDissectConfig, netdissect

        job.report(0.0, "exporting the probe set")
        probe = BrodenDataset(ensure_world_probe(request.samples, cancelled=job.cancelled))
        model = private_copy(classifier)
        table = netdissect(model, [request.layer], probe, NetDissectConfig(quantile=request.quantile,
                           limit=request.samples), progress=_progress(job), cancelled=job.cancelled)[request.layer]
        summary = write_netdissect_outputs(model, table, probe, job.directory, strips=10)
        return {**summary, "table": "netdissect.json", "tally": "tally.csv"}

    return _submit(state, "netdissect", request.model_dump(), work)


@router.post("/topk", status_code=202, summary="Top-activating world images of classifier units (a job)",
             responses=responses(422, 503))
def start_topk(request: TopkRequest, state: StateDep,
               classifier: ClassifierDep) -> JSONResponse:
    _check_layer(classifier, request.layer)

    def work(job: Job) -> dict[str, Any]:
        from dissect_core.topk import top_activating, write_strips

        source = world_images(request.count, cancelled=job.cancelled)
        model = private_copy(classifier)
        result = top_activating(model, request.layer, source, request.k,
                                progress=lambda done, total: job.report(done / total, "scanning images"),
                                cancelled=job.cancelled)
        units = [u for u in request.units if u < result.indices.shape[0]]
        files = write_strips(model, result, source, job.directory, units, count=min(request.k, 8))
        return {"units": [{"unit": u, "image": f.name, "top_images": [int(i) for i in result.indices[u]]}
                          for u, f in zip(units, files)]}

    return _submit(state, "topk", request.model_dump(), work)


@router.post("/dissect", status_code=202, summary="Build a layer's dissection table (a job; the painter uses it)",
             responses=responses(403, 404, 422, 503))
def start_dissect(request: DissectRequest, state: StateDep) -> JSONResponse:
    """The same build the server runs for an edit layer: dissection, causal ranking, checkpoints. With
    the server's settings (samples, quantile, threshold) the result becomes the painter's table."""
    model = state.catalog.get(request.model)  # a sync route: runs on a worker thread
    server = state.catalog.server_config()
    config = DissectConfig(samples=request.samples or server.samples, quantile=request.quantile,
                           threshold=request.threshold or server.threshold)
    job = start_table_build(state, model, request.layer, config)
    return JSONResponse(job.describe(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{20}$")]


def _job(state: Any, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"no job {job_id}")
    return job


@router.get("/jobs/{job_id}", summary="A job's status, progress and result", responses=responses(404))
def job_status(job_id: JobId, state: StateDep) -> JobView:
    return JobView(**_job(state, job_id).describe())


@router.delete("/jobs/{job_id}", summary="Cancel a job", responses=responses(404))
def cancel_job(job_id: JobId, state: StateDep) -> JobView:
    if state.jobs.cancel(job_id) is None:
        raise ApiError(404, "unknown_job", f"no job {job_id}")
    return JobView(**_job(state, job_id).describe())


@router.get("/jobs/{job_id}/files/{name}", summary="A result file of a finished job",
            response_class=FileResponse, responses=responses(404))
def job_file(job_id: JobId, name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")],
             state: StateDep) -> FileResponse:
    job = _job(state, job_id)
    path = job.directory / name
    if job.status != "done" or not path.is_file() or path.resolve().parent != job.directory.resolve():
        raise ApiError(404, "no_file", f"job {job_id} has no file {name!r}")
    return FileResponse(path)


@ws_router.websocket("/ws/jobs/{job_id}")
async def job_updates(websocket: WebSocket, job_id: str) -> None:
    state = app_state(websocket)
    if not await accept_websocket(websocket):
        return
    job = state.jobs.get(job_id) if len(job_id) == 20 else None
    try:
        if job is None:
            await websocket.send_text(json.dumps({"type": "error", "code": "unknown_job", "message": f"no job {job_id}"}))
            await websocket.close()
            return
        if job.remote:
            await _stream_remote(websocket, state, job)
            return
        version = -1
        while True:
            # woken by the job's own change notifications (progress, status), not by polling
            version = await asyncio.to_thread(job.wait_changed, version, 5.0)
            snapshot = job.describe()
            await websocket.send_text(json.dumps({"type": "job", **snapshot}))
            if snapshot["status"] in TERMINAL:
                break
        await websocket.close()
    except WebSocketDisconnect:
        pass  # the page went away: a normal end, nothing to log


async def _stream_remote(websocket: WebSocket, state: Any, job: Job) -> None:
    """A job another server process runs: its records as the shared store publishes them (the
    current one first, and again every 5 s without news, so a missed message costs at most that)."""
    updates = state.jobs.watch(job, 5.0)
    try:
        snapshot = job.describe()
        await websocket.send_text(json.dumps({"type": "job", **snapshot}))
        while snapshot["status"] not in TERMINAL:
            record = await asyncio.to_thread(next, updates)
            if record is None:  # no news for a while: read the record as it stands
                current = state.jobs.get(job.id) or job
            else:
                current = state.jobs.from_record(record, remote=True)
            snapshot = current.describe()
            await websocket.send_text(json.dumps({"type": "job", **snapshot}))
        await websocket.close()
    finally:
        updates.close()
