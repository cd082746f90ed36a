"""What the earlier API's front doors share over HTTP (api/legacy_seed004.py, api/legacy_seed003.py): their
error shape, the bounded synchronous wait, the async mode.

The users' earlier orchestrator answered each call only when its result was ready. These routes do the
same, but bounded: they submit through JobService (the one submit path), then wait up to
`service.legacy_sync_wait_s` for the job(s) to end. A call that runs longer gets a 504 carrying the job id
(the job keeps running; GET /job/{id} has the result later). `?async=true` or `Prefer: respond-async`
returns 202 with the job id at once; `Prefer: wait=N` shortens the wait for one call (RFC 7240).

Errors are the earlier API's `{"error": <reason phrase>, "message": <sentence>}` (with `code`, the HTTP
status, and `error_code`, ours), so its clients' error handling keeps working; a request the service's
own validation refuses (422 elsewhere) is a 400 here, as it was there. A job that fails is answered by who
caused it (failed_status): the user's input 422/400 with the job's code, ours 500.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, cast

from fastapi import Request
from fastapi.responses import JSONResponse

from reelforge.api.auth import current_tenant
from reelforge.api.dbcalls import run_db
from reelforge.api.ratelimit import take
from reelforge.errors import (
    InvalidParams,
    RateLimited,
    ReelForgeError,
    UnknownOperation,
    UserError,
    job_error_status,
)
from reelforge.formats.seed004 import RUNPOD_STATUS, overall_status
from reelforge.jobs.service import JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord
from reelforge.jobs.urls import output_url

_WAIT_RE = re.compile(r"(?:^|[;,\s])wait\s*=\s*([0-9]+(?:\.[0-9]+)?)")


def error_response(status: int, message: str, code: str | None = None,
                   extra: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": HTTPStatus(status).phrase, "message": message, "code": status}
    if code:
        body["error_code"] = code
    return JSONResponse({**body, **(extra or {})}, status_code=status)


def from_domain(exc: ReelForgeError) -> JSONResponse:
    status = 400 if isinstance(exc, InvalidParams | UnknownOperation) else exc.http_status
    resp = error_response(status, exc.message, exc.code)
    if isinstance(exc, RateLimited):
        resp.headers.update(exc.headers)  # Retry-After
    return resp


def service(request: Request) -> JobService:
    return cast(JobService, request.app.state.jobs)


def url_of(svc: JobService) -> Any:
    """(job, output name) -> the output's download URL, for the formats' answers."""
    def url(job: JobRecord, name: str) -> str | None:
        meta = ((job.result or {}).get("outputs") or {}).get(name)
        return output_url(svc.settings, svc.storage, job.id, name, meta) if meta else None
    return url


async def tenant_of(request: Request) -> str:
    return await current_tenant(request)  # AuthError -> 401 in the legacy shape (caught by the routes)


async def submitting_tenant(request: Request) -> str:
    """The tenant of a request that submits work, after one `submit` token of its key's rate limit
    (RateLimited -> 429 with Retry-After in the legacy shape)."""
    tenant = await current_tenant(request)
    await take(request, tenant, "submit")
    return tenant


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise UserError("The request body must be JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise UserError("The request body must be a JSON object.", code="invalid_json")
    return body


def wants_async(request: Request) -> bool:
    flag = request.query_params.get("async", "").strip().lower()
    return flag in ("1", "true", "yes") or "respond-async" in request.headers.get("prefer", "").lower()


def wait_budget(request: Request) -> float:
    limit = float(request.app.state.settings.service.legacy_sync_wait_s)
    m = _WAIT_RE.search(request.headers.get("prefer", "").lower())
    return min(limit, float(m.group(1))) if m else limit


async def wait_for(request: Request, tenant: str, ids: Sequence[str], budget_s: float) -> list[JobRecord]:
    """The jobs, once every one has ended or `budget_s` has passed (whichever comes first)."""
    svc = service(request)
    deadline = time.monotonic() + budget_s
    delay = 0.05
    while True:
        jobs = await run_db(request, _get_all, svc, tenant, list(ids))
        left = deadline - time.monotonic()
        if all(j.status.terminal for j in jobs) or left <= 0 or await request.is_disconnected():
            return jobs
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, 1.0)


def _get_all(svc: JobService, tenant: str, ids: list[str]) -> list[JobRecord]:
    return [svc.get(tenant, job_id) for job_id in ids]


def pending_response(job_id: str, jobs: Sequence[JobRecord], *, accepted: bool, waited_s: float) -> JSONResponse:
    """202 for async mode; 504 when the bounded wait ran out. Both carry the id to poll."""
    status = RUNPOD_STATUS[overall_status(jobs)]
    links = {"jobId": job_id, "status": status, "statusUrl": f"/job/{job_id}", "cancelUrl": f"/job/{job_id}/cancel"}
    if accepted:
        return JSONResponse({"code": 202, "message": f"Job accepted; poll GET /job/{job_id} for its result.",
                             **links}, status_code=202, headers={"Preference-Applied": "respond-async",
                                                                  "Location": f"/job/{job_id}"})
    return error_response(504, f"The job is still running after {waited_s:g} s. It goes on: poll GET /job/{job_id} "
                               f"for its result, or POST /job/{job_id}/cancel to stop it.", "still_running", links)


def failed_status(status: JobStatus, error: dict[str, Any] | None) -> int:
    """The HTTP status of a call whose job ended without outputs, by who caused it: cancelled 409, timed out
    504; a failure from the user's input or params (a 4xx error, errors.job_error_status) 422 where the
    native API answers 422 (input/media/params errors), else 400; any other failure (ffmpeg crash, worker
    lost, a missing model: ours) 500."""
    if status == JobStatus.CANCELLED:
        return 409
    if status == JobStatus.TIMED_OUT:
        return 504
    http = job_error_status(error)
    if 400 <= http < 499:  # 499 is a cancel seen from inside the job
        return 422 if http == 422 else 400
    return 500


def failed_response(job_id: str, jobs: Sequence[JobRecord]) -> JSONResponse:
    """A job that ended without its outputs: its own error sentence and code, with the id."""
    status = overall_status(jobs)
    bad = next((j for j in jobs if j.status == status), jobs[0])
    err = bad.error or {}
    http = failed_status(status, err)
    message = err.get("message") or f"The job ended {status.value}."
    return error_response(http, message, err.get("code") or status.value,
                          {"jobId": job_id, "status": RUNPOD_STATUS[status]})
