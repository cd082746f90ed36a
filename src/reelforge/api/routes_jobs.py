"""/v1/jobs: submit, read, list, cancel, stream progress, download outputs."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from pydantic import ValidationError

from reelforge.api.auth import current_tenant
from reelforge.api.errors import invalid_params
from reelforge.api.schemas import JobCreate, JobList, JobView, job_view
from reelforge.engine.metrics import JOBS_SUBMITTED
from reelforge.errors import InputError, InvalidParams, NotFound
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord
from reelforge.ops.params import FILE_ID_RE
from reelforge.ops.registry import get_operation
from reelforge.storage.urlguard import check_url_syntax

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[str, Depends(current_tenant)]


def _output_url(request: Request) -> Any:
    state = request.app.state

    def url(job: JobRecord, name: str, meta: dict[str, Any]) -> str:
        direct = state.services.storage.url(meta["key"], filename=meta.get("filename"))
        return direct or f"{state.settings.public_url}/v1/jobs/{job.id}/outputs/{name}"

    return url


def _file_ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if FILE_ID_RE.match(value) else []
    if isinstance(value, dict):
        return [f for v in value.values() for f in _file_ids(v)]
    if isinstance(value, list):
        return [f for v in value for f in _file_ids(v)]
    return []


def _get_job(request: Request, job_id: str, tenant: str) -> JobRecord:
    job = request.app.state.services.store.get_job(job_id, tenant)
    if job is None:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    return job


@router.post("", status_code=202, response_model=JobView, summary="Submit a job")
async def submit_job(body: JobCreate, request: Request, tenant: Tenant,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> JobView:
    # async with the DB work on the submit writer thread (group commit): the hottest write path
    state = request.app.state
    settings = state.settings
    op = get_operation(body.op)
    try:
        params = op.params_model.model_validate(
            body.params, context={"source": "api", "allow_private": settings.fetch_allow_private})
    except ValidationError as exc:
        raise invalid_params(exc) from None
    except InvalidParams as exc:  # raised by an op's own checks (e.g. a pipeline's graph): same shape
        if isinstance(exc.details, dict) and "path" in exc.details:
            exc.details = [{"path": f"params.{exc.details['path']}", "message": exc.message}]
        raise
    stored_params = params.model_dump(mode="json")
    store = state.services.store
    file_ids = _file_ids(body.params)
    if file_ids:
        for file_id in file_ids:
            if await run_in_threadpool(store.get_file, file_id, tenant) is None:
                raise InputError(f"No uploaded file {file_id!r}.", code="input_not_found")
    if body.webhook_url:
        try:
            check_url_syntax(body.webhook_url, allow_private=settings.fetch_allow_private)
        except ValueError as exc:
            raise InvalidParams(f"Invalid webhook_url: {exc}.", code="invalid_webhook_url") from None
    timeout = body.timeout_s or op.timeout_s
    if timeout > settings.max_timeout_s:
        raise InvalidParams(f"timeout_s may be at most {settings.max_timeout_s:g} seconds.")
    values = store.new_job_values(
        tenant=tenant, op=op.name, params=stored_params, queue=op.queue, timeout_s=timeout,
        max_attempts=settings.max_attempts, priority=body.priority, webhook_url=body.webhook_url,
        idempotency_key=body.idempotency_key or idempotency_key,
    )
    job, created = await state.batcher.create(values)
    if created:
        JOBS_SUBMITTED.labels(op=op.name).inc()
    return job_view(job, _output_url(request))


@router.get("", response_model=JobList, summary="List jobs, newest first")
def list_jobs(request: Request, tenant: Tenant,
              status: Annotated[list[JobStatus] | None, Query()] = None,
              op: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
              before: float | None = None) -> JobList:
    jobs = request.app.state.services.store.list_jobs(
        tenant=tenant, status=[s.value for s in status or []], op=op, limit=limit, before=before)
    url = _output_url(request)
    nxt = jobs[-1].created_at if len(jobs) == limit else None
    return JobList(jobs=[job_view(j, url) for j in jobs], next_before=nxt)


@router.get("/{job_id}", response_model=JobView, summary="A job's status, progress and result")
async def get_job(job_id: str, request: Request, tenant: Tenant) -> JobView:
    store = request.app.state.services.store
    job = await run_in_threadpool(store.get_job, job_id, tenant)
    if job is None:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    attempts = await run_in_threadpool(store.webhook_attempts, job_id) if job.webhook_url else None
    return job_view(job, _output_url(request), attempts)


@router.post("/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job")
def cancel_job(job_id: str, request: Request, tenant: Tenant) -> JobView:
    state = request.app.state
    job = state.services.store.request_cancel(job_id, tenant)
    if job is None:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    if job.status == JobStatus.RUNNING:
        state.executor.cancel(job_id)
    elif job.status == JobStatus.CANCELLED and job.webhook_url and job.started_at is None:
        from reelforge.engine.runner import job_event

        state.services.webhooks.send(job.id, job.webhook_url, job_event(job, "job.cancelled",
                                                                       status="cancelled"), kind="state")
    return job_view(job, _output_url(request))


@router.get("/{job_id}/events", summary="Server-sent events with the job's progress until it ends")
async def job_events(job_id: str, request: Request, tenant: Tenant) -> StreamingResponse:
    store = request.app.state.services.store
    first = await run_in_threadpool(store.get_job, job_id, tenant)
    if first is None:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    url = _output_url(request)

    async def stream() -> Any:
        last: tuple[Any, ...] | None = None
        idle = 0.0
        while True:
            job = await run_in_threadpool(store.get_job, job_id, tenant)
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


@router.get("/{job_id}/outputs/{name}", summary="Download one output of a finished job", response_model=None)
def get_output(job_id: str, name: str, request: Request, tenant: Tenant) -> FileResponse | RedirectResponse:
    job = _get_job(request, job_id, tenant)
    outputs = (job.result or {}).get("outputs") or {}
    if name not in outputs:
        raise NotFound(f"Job {job_id} has no output {name!r}.", code="output_not_found")
    meta = outputs[name]
    storage = request.app.state.services.storage
    local = storage.local_path(meta["key"])
    if local is not None:
        return FileResponse(local, media_type=meta.get("content_type"), filename=meta.get("filename"))
    url = storage.url(meta["key"], filename=meta.get("filename"))
    if not url:
        raise NotFound("This output is not downloadable.", code="output_not_found")
    return RedirectResponse(url, status_code=307)
