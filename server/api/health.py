"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from server.api.deps import StateDep, has_token, require_token
from server.api.views import Liveness

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up")
def livez() -> Liveness:
    return Liveness(status="ok")


@router.get("/readyz", summary="Ready to paint: model loaded, executor running, queue not full; tables progress",
            responses={503: {"description": "Not ready (starting, draining or saturated)"}})
def readyz(state: StateDep, details: bool = Depends(has_token)) -> JSONResponse:
    """The status for load balancers; the details (device, queue, models) only with the token."""
    saturated = state.executor.depth >= state.settings.queue_size
    ready = state.ready and not state.draining and not saturated
    body: dict[str, Any] = {"status": "ready" if ready else ("draining" if state.draining else
                                                             "starting" if not state.ready else "busy")}
    if details:
        body.update(device=str(state.device), queue_depth=state.executor.depth,
                    models=[m.describe() for m in state.catalog.loaded()])
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (edit latency, queue depth, batch size, ...)",
            response_class=Response, dependencies=[Depends(require_token)])
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
