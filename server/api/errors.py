"""REST side of the error hierarchy (``server.errors``): ``ApiError`` for route checks, OpenAPI entries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from server.errors import ServiceError, error_body

__all__ = ["ApiError", "ErrorBody", "error_body", "responses"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(ServiceError):
    """A route's own refusal, status first (``ApiError(404, "unknown_unit", "...")``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code, status, headers)


_DESCRIPTIONS = {
    400: "Malformed request body (not JSON)",
    401: "Missing or wrong token (when the server has one configured)",
    403: "Not allowed on this server (a table build the operator has not enabled)",
    404: "Unknown model, layer, unit or sample",
    409: "Superseded by a newer request",
    413: "Request body too large",
    422: "Request failed validation (strict types, bounds, unknown brush, unit out of range)",
    429: "Too many sign-in attempts; wait for Retry-After seconds",
    503: "Busy (queue full, deadline passed) or tables still building; retry later",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the given error statuses (plus the always-possible ones)."""
    wanted = sorted(set(statuses) | {401, 422})
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in wanted}
