"""The one place exceptions become HTTP responses: always `{"error": {"code", "message", "details"?}}`.

The same shape is the OpenAPI's `ErrorResponse` (api/openapi.py documents it on every operation), so the
models below are the documentation and `error_response` is what is sent: they cannot drift apart.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelforge.api.routing import methods_at
from reelforge.errors import ReelForgeError, invalid_params, validation_details, wire_details

log = logging.getLogger("reelforge.api")
__all__ = ["ErrorBody", "ErrorDetail", "ErrorResponse", "error_response", "install_error_handlers", "invalid_params",
           "validation_details"]


class ErrorDetail(BaseModel):
    """One fact about an error: the field it is about (a dotted path, "" when none) and what is wrong there.
    Some errors add facts of their own, e.g. `available` (the valid choices) or `step` (a pipeline step id)."""

    model_config = ConfigDict(extra="allow")

    path: str = Field(description='The offending field as a dotted path, e.g. "params.input"; "" when none')
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable, e.g. `invalid_params`, `job_not_found`, `rate_limited`")
    message: str = Field(description="One sentence for a person")
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorBody


# what each documented error status means here (api/openapi.py puts these on the operations)
STATUS_TEXT: dict[int, str] = {
    400: "The request is malformed (`bad_request`, `empty_upload`, `missing_file`, ...)",
    401: "No valid API key (`missing_api_key`, `invalid_api_key`) or agent token",
    403: "The credential is valid but may not do this",
    404: "No such resource for this key's tenant (another tenant's ids read as missing)",
    409: "The resource is in a state that does not allow this",
    413: "The request body is larger than the limit (`payload_too_large`, `upload_too_large`)",
    422: "The body or parameters are invalid (`invalid_request`, `invalid_params`, `unknown_op`, "
         "`input_not_found`, ...): `details` names each offending field",
    429: "Too many requests of this kind from this key (`rate_limited`); retry after `Retry-After` seconds",
    503: "A part the service needs (database, broker, storage) is down; retry later",
    507: "Not enough free disk space on the server (`disk_full`); retry later",
}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    wired = wire_details(details, message)
    if wired is not None:
        body["details"] = wired
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ReelForgeError)
    async def _domain(_req: Request, exc: ReelForgeError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, exc.message, exc.details,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc)
        first = details[0] if details else {"path": "body", "message": "invalid request"}
        return error_response(422, "invalid_request", f"Invalid request at {first['path']}: {first['message']}.",
                              details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 401: "unauthorized"}
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint."
        if exc.status_code == 405:
            # starlette names only the methods of the first route matching the path; list them all
            allow = methods_at(req.app, req.url.path)
            headers["Allow"] = ", ".join(allow)
            message = f"{req.method} is not allowed here; allowed: {', '.join(allow)}."
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message,
                              headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
