"""One error hierarchy for everything a client is told went wrong, and its two mappers.

Every refusal the server makes is a ``ServiceError``: a stable ``code`` (docs/api.md lists them), a
message for people and an HTTP ``status``. REST answers it as ``{"error": {"code", "message"}}`` with
that status (``http_response``); the painting websocket as ``{"type": "error", "seq", "code",
"message"}`` (``ws_message``). So the same state has the same code on both (a table that is still
being built is ``tables_building`` everywhere), and no route converts errors by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServiceError", "Busy", "Superseded", "DeadlineExceeded", "UnknownModel", "ModelUnavailable",
           "TablesBuilding", "error_body", "http_headers"]


class ServiceError(Exception):
    """A failure with a protocol ``code`` and an HTTP ``status``; subclasses fix both."""

    code = "error"
    status = 500

    def __init__(self, message: str, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers


class Busy(ServiceError):
    code, status = "busy", 503


class Superseded(ServiceError):
    code, status = "superseded", 409


class DeadlineExceeded(ServiceError):
    code, status = "deadline", 503


class UnknownModel(ServiceError, LookupError):
    code, status = "unknown_model", 404


class ModelUnavailable(ServiceError):
    """The model is offered but its weights cannot be loaded (a corrupt or foreign file)."""

    code, status = "model_unavailable", 404


class TablesBuilding(ServiceError):
    code, status = "tables_building", 503


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON body of every REST error."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def http_headers(error: ServiceError) -> dict[str, str] | None:
    """Headers of an error's HTTP answer: its own, and ``Retry-After`` on every 503."""
    headers = dict(error.headers or {})
    if error.status == 503:
        headers.setdefault("Retry-After", "1")
    return headers or None
