"""/v1/jobs over HTTP: submit, read, list, cancel, retry, stream progress, download outputs.

HTTP in and out only; every decision is jobs/service.py's (JobService), shared with other front doors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from reelforge.api.auth import current_principal, current_tenant
from reelforge.api.openapi import EVENT_STREAM, binary_response, error_responses
from reelforge.api.ratelimit import rate_limit
from reelforge.api.schemas import JobCreate, JobList, JobView, WebhookReplay, job_view
from reelforge.errors import Forbidden, NotFound
from reelforge.jobs.service import JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store_keys import Principal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[str, Depends(current_tenant)]
SubmitLimit = Depends(rate_limit("submit"))
# reads and actions on existing jobs: scoped to the key's tenant, or to none for an admin key
Who = Annotated[Principal, Depends(current_principal)]


def _service(request: Request) -> JobService:
    return cast(JobService, request.app.state.jobs)


@router.post("", status_code=202, response_model=JobView, summary="Submit a job", dependencies=[SubmitLimit],
             responses=error_responses(409))
async def submit_job(body: JobCreate, request: Request, tenant: Tenant,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> JobView:
    # async: the service keeps the database work on threads and group-commits the insert
    service = _service(request)
    job, _created = await service.submit_async(tenant, body, idempotency_key=idempotency_key, strict=True)
    return job_view(job, service.output_url)


@router.get("", response_model=JobList, summary="List jobs, newest first", responses=error_responses(403))
def list_jobs(request: Request, who: Who,
              status: Annotated[list[JobStatus] | None, Query()] = None,
              op: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
              before: float | None = None,
              tenant: Annotated[str | None, Query(description="Only this tenant's jobs: for an admin key, which "
                                                  "otherwise lists every tenant's; any other key may name only its "
                                                  "own tenant (403 `admin_key_required`)")] = None) -> JobList:
    service = _service(request)
    if tenant is not None and not who.admin and tenant != who.tenant:
        raise Forbidden("Only an admin key may list another tenant's jobs.", code="admin_key_required")
    scope = tenant if tenant is not None else who.scope
    jobs = service.list_jobs(scope, status=[s.value for s in status or []], op=op, limit=limit, before=before)
    nxt = jobs[-1].created_at if len(jobs) == limit else None
    return JobList(jobs=[job_view(j, service.output_url) for j in jobs], next_before=nxt)


@router.get("/{job_id}", response_model=JobView, summary="A job's status, progress and result")
async def get_job(job_id: str, request: Request, who: Who) -> Response:
    tenant = who.scope
    # the hottest read (clients poll it): through the batched status reader (jobs/batcher.py), and the view
    # serialised once (returning the model would have FastAPI validate it again against JobView)
    service = _service(request)
    job, attempts = await service.get_with_attempts_async(tenant, job_id)
    return Response(job_view(job, service.output_url, attempts).model_dump_json(), media_type="application/json")


@router.post("/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job")
def cancel_job(job_id: str, request: Request, who: Who) -> JobView:
    tenant = who.scope
    service = _service(request)
    return job_view(service.cancel(tenant, job_id), service.output_url)


@router.post("/{job_id}/retry", status_code=202, response_model=JobView, dependencies=[SubmitLimit],
             responses=error_responses(409), summary="Run a failed, cancelled or timed-out job again, as a new job",
             description="Returns the new job (its `notes.retry_of` names this one); asking again returns the "
                         "same new job. 409 `job_not_retryable` for a job that is queued, running or succeeded.")
def retry_job(job_id: str, request: Request, who: Who) -> JobView:
    tenant = who.scope
    service = _service(request)
    job, _created = service.retry(tenant, job_id)
    return job_view(job, service.output_url)


@router.post("/{job_id}/webhooks/replay", status_code=202, response_model=WebhookReplay,
             responses=error_responses(409), summary="Send the job's webhook events again",
             description="Every job state event still kept (7 days) is delivered again, with its own `webhook-id` "
                         "and the retry schedule from the start; when none is kept, the job's terminal event "
                         "anew. 409 `no_webhook` for a job without a `webhook_url`.")
def replay_webhooks(job_id: str, request: Request, who: Who) -> WebhookReplay:
    tenant = who.scope
    return WebhookReplay(job_id=job_id, replayed=_service(request).replay_webhooks(tenant, job_id))


@router.get("/{job_id}/events", summary="Server-sent events with the job's progress until it ends",
            response_class=StreamingResponse, responses=EVENT_STREAM)
async def job_events(job_id: str, request: Request, who: Who) -> StreamingResponse:
    tenant = who.scope
    service = _service(request)
    await run_in_threadpool(service.get, tenant, job_id)  # 404 before the stream starts
    url = service.output_url

    async def stream() -> Any:
        last: tuple[Any, ...] | None = None
        idle = 0.0
        while True:
            job = await run_in_threadpool(service.find, tenant, job_id)
            if job is None:
                return
            key = (job.status, job.stage, round(job.progress, 3))
            if key != last:
                last = key
                idle = 0.0
                body = {"status": job.status.value, "stage": job.stage, "progress": round(job.progress, 4)}
                event = "progress"
                if job.status.terminal:
                    event = "done"
                    body = job_view(job, url).model_dump(mode="json")
                yield f"event: {event}\ndata: {json.dumps(body)}\n\n"
                if job.status.terminal:
                    return
            elif idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.5)
            idle += 0.5

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/outputs/{name}", summary="Download one output of a finished job", response_model=None,
            response_class=Response, responses=binary_response("The output"))
def get_output(job_id: str, name: str, request: Request, who: Who) -> FileResponse | RedirectResponse:
    tenant = who.scope
    service = _service(request)
    meta = service.output(tenant, job_id, name)
    storage = service.storage
    local = storage.local_path(meta["key"])
    if local is not None:
        return FileResponse(local, media_type=meta.get("content_type"), filename=meta.get("filename"))
    url = storage.url(meta["key"], filename=meta.get("filename"))
    if not url:
        raise NotFound("This output is not downloadable.", code="output_not_found")
    return RedirectResponse(url, status_code=307)
