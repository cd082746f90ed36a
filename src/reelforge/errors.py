"""One exception tree for everything a user or an operation can cause.

    ReelForgeError                 code, http_status, message
    ├── UserError (400)            the request itself is wrong
    │   ├── InvalidParams (422)    params fail validation (carries field paths)
    │   ├── UnknownOperation (422)
    │   ├── NotFound (404)         also used for another tenant's ids
    │   ├── PayloadTooLarge (413)
    │   ├── InputError (422)       an input cannot be fetched / is not allowed
    │   │   └── UrlNotAllowed (422)
    │   └── MediaError (422)       an input is not usable media (corrupt, no stream, too big)
    ├── AuthError (401)
    ├── Conflict (409)
    ├── JobCancelled (499)         raised inside a job when cancel was requested
    ├── JobTimedOut (504)
    ├── ProcessingError (500)      the work failed for a reason that is not the user's (ffmpeg crash, ...)
    ├── DiskFull (507)             not enough free disk space for the upload / job (never retried)
    ├── RateLimited (429)          a key sent more submits / uploads than its limit (Retry-After says when)
    └── ServiceUnavailable (503)   a dependency (store, broker, storage) is down

Domain code raises these; only api/errors.py turns them into HTTP responses, and the runner turns them
into a job's `error` {code, message, http_status} (job_error: http_status says whether the user or the
service caused the failure once the class is gone). Every class has a machine-readable default `code`; instances may
carry a more specific one (e.g. MediaError(code="no_video_stream")).

On the wire (`to_dict`: HTTP error bodies, a job's `error`, webhooks) `details` is always a list of objects,
each with `path` (the offending field, "" when the error is not about one field) and `message`, plus any
facts the raiser gave (`available`, `step`, ...): a raiser may pass one dict or a list (wire_details).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ReelForgeError(Exception):
    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the class default

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        details = wire_details(self.details, self.message)
        if details is not None:
            body["details"] = details
        return body


def wire_details(details: Any, message: str) -> list[dict[str, Any]] | None:
    """An error's details in their one wire shape: a list of {"path", "message", ...facts} (see the module doc).

    One dict becomes a one-item list; an item without a path gets "" and one without a message gets the error's
    message; anything that is not a dict is kept under "value"."""
    if details is None:
        return None
    items = details if isinstance(details, list | tuple) else [details]
    out = []
    for item in items:
        entry = dict(item) if isinstance(item, dict) else {"value": item}
        path = entry.get("path")
        entry["path"] = "" if path is None else str(path)
        entry["message"] = str(entry.get("message") or message)
        out.append(entry)
    return out


class UserError(ReelForgeError):
    code = "bad_request"
    http_status = 400


class InvalidParams(UserError):
    code = "invalid_params"
    http_status = 422


class UnknownOperation(UserError):
    code = "unknown_op"
    http_status = 422


class NotFound(UserError):
    code = "not_found"
    http_status = 404


class PayloadTooLarge(UserError):
    code = "payload_too_large"
    http_status = 413


class InputError(UserError):
    code = "input_unavailable"
    http_status = 422


class UrlNotAllowed(InputError):
    code = "url_not_allowed"


class MediaError(UserError):
    code = "media_invalid"
    http_status = 422


class AuthError(ReelForgeError):
    code = "unauthorized"
    http_status = 401


class Forbidden(ReelForgeError):
    code = "forbidden"
    http_status = 403


class Conflict(ReelForgeError):
    code = "conflict"
    http_status = 409


class JobCancelled(ReelForgeError):
    code = "cancelled"
    http_status = 499


class JobTimedOut(ReelForgeError):
    code = "timed_out"
    http_status = 504


class ProcessingError(ReelForgeError):
    code = "processing_failed"
    http_status = 500


class ServiceUnavailable(ReelForgeError):
    code = "service_unavailable"
    http_status = 503


class DiskFull(ReelForgeError):
    code = "disk_full"
    http_status = 507


class RateLimited(ReelForgeError):
    """Too many requests of one kind from one key; `retry_after_s` is when the next one would be allowed."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None, details: Any = None) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        import math

        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


# ---- a job's stored error: who caused it (the earlier API's front doors answer a failed job by it)
def job_error(exc: ReelForgeError) -> dict[str, Any]:
    """The error a job stores and sends: `to_dict` plus `http_status`, the status the same error gets when a
    request raises it (4xx: the user's input or params; 5xx: ours), since the class is gone once stored."""
    return {**exc.to_dict(), "http_status": exc.http_status}


def _default_statuses() -> dict[str, int]:
    out: dict[str, int] = {}
    todo: list[type[ReelForgeError]] = [ReelForgeError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.code, cls.http_status)
        todo.extend(cls.__subclasses__())
    return out


def job_error_status(error: dict[str, Any] | None) -> int:
    """The HTTP status of a failed job's stored error: its `http_status` (job_error), else the status of the
    error class whose default code it carries (rows stored before http_status), else 500: a failure that
    says nothing of its cause (worker lost, an op's bug) is ours."""
    err = error or {}
    status = err.get("http_status")
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    return _default_statuses().get(str(err.get("code")), 500)


# ---- pydantic validation errors -> InvalidParams with JSON paths (used by the API and jobs/service.py)
def validation_details(exc: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Field paths and messages of a pydantic ValidationError (or FastAPI's RequestValidationError)."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        out.append({"path": path or prefix or "body", "message": msg})
    return out


def invalid_params(exc: Any, prefix: str = "params") -> InvalidParams:
    """A pydantic ValidationError as the 422 every caller sees: the first bad path in the message."""
    details = validation_details(exc, prefix)
    first = details[0] if details else {"path": prefix, "message": "invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidParams(f"Invalid value at {first['path']}: {first['message']}{more}.", details=details)
