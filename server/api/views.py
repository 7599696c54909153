"""Response models of the REST routes whose answers have a fixed shape (``response_model=``), so
the OpenAPI document says what comes back and the fuzz tests check answers against it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from server.catalog import TableStatus
from server.jobs import JobStatus

__all__ = ["JobView", "LayerView", "TableView", "ModelView", "SamplePage", "Liveness"]


class JobView(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    progress: float
    message: str
    result: dict[str, Any]
    error: str | None
    notes: list[str]
    created: float
    finished: float | None
    eta_s: float | None
    """Seconds left while running (extrapolated from the progress), else null."""
    files: list[str]


class LayerView(BaseModel):
    name: str
    shape: list[int]


class TableView(BaseModel):
    status: TableStatus
    progress: float
    job: str | None


class ModelView(BaseModel):
    id: str
    resolution: int
    z_dim: int
    edit_layer: str
    layers: list[LayerView]
    tables: dict[str, TableView]


class SamplePage(BaseModel):
    model: str
    ids: list[int]
    max_id: int


class Liveness(BaseModel):
    status: str
