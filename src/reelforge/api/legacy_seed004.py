"""The users' earlier API (seed 004) over HTTP: `/video/caption`, `/video/img2vid`, `/video/addaudio`,
`/transcribe`, `GET /job/{id}`, `POST /job/{id}/cancel` (GET /health is the service's own).

Thin: parse the body, translate it (formats/seed004.py: the format, pure), submit each job through
JobService, wait or answer at once (api/legacy_common.py), answer from the job rows. Docs:
docs/FRONTDOOR_SEED004.md.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reelforge.api.dbcalls import run_db
from reelforge.api.legacy_common import (
    failed_response,
    from_domain,
    json_body,
    pending_response,
    service,
    submitting_tenant,
    tenant_of,
    url_of,
    wait_budget,
    wait_for,
    wants_async,
)
from reelforge.api.legacy_schemas import (
    OWN_DOCS,
    READ_ERRORS,
    SUBMIT_ERRORS,
    AddAudioRequest,
    CaptionRequest,
    Img2VidRequest,
    JobAccepted,
    LegacyCancelled,
    LegacyJobStatus,
    LegacyResult,
    TranscribeRequest,
    answers,
    body,
)
from reelforge.api.routes_system import Health, health
from reelforge.errors import NotFound, ReelForgeError
from reelforge.formats import seed004
from reelforge.formats.seed004 import RUNPOD_STATUS, Submission, overall_status
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord
from reelforge.models.whisper import job_models

router = APIRouter(tags=["earlier API (seed 004)"])


async def _submit(request: Request, build: Callable[[dict[str, Any], str], list[Submission]],
                  group: bool = False) -> JSONResponse:
    try:
        tenant = await submitting_tenant(request)
        body = await json_body(request)
        images = body.get("images")
        gid = seed004.group_id(uuid.uuid4().hex[:20], len(images) if isinstance(images, list) else 0) if group else ""
        planned = [(JobCreate(op=s.op, params=s.params, output_paths=s.output_paths,
                              idempotency_key=s.idempotency_key), s.notes) for s in build(body, gid)]
        svc = service(request)
        for job, notes in planned:  # every job validated before any is inserted: all or nothing
            svc.prepare(tenant, job, notes=notes)
        created = await asyncio.gather(*(svc.submit_async(tenant, job, notes=notes) for job, notes in planned))
        jobs = [job for job, _ in created]
        job_id = gid or jobs[0].id
        if wants_async(request):
            return pending_response(job_id, jobs, accepted=True, waited_s=0)
        budget = wait_budget(request)
        jobs = await wait_for(request, tenant, [j.id for j in jobs], budget)
        status = overall_status(jobs)
        if status == JobStatus.SUCCEEDED:
            return JSONResponse(seed004.envelope(job_id, jobs, url_of(svc)))
        if not status.terminal:
            return pending_response(job_id, jobs, accepted=False, waited_s=budget)
        return failed_response(job_id, jobs)
    except ReelForgeError as exc:
        return from_domain(exc)


@router.post("/video/caption", summary="Burn SRT subtitles into a video (earlier API)",
             responses=answers({200: LegacyResult, 202: JobAccepted}, *SUBMIT_ERRORS),
             openapi_extra=body(CaptionRequest, "The video, its SRT, and where the output lands"))
async def video_caption(request: Request) -> JSONResponse:
    return await _submit(request, lambda body, _g: seed004.caption_jobs(body))


@router.post("/video/img2vid", summary="Images to Ken Burns videos, one job per image (earlier API)",
             responses=answers({200: LegacyResult, 202: JobAccepted}, *SUBMIT_ERRORS),
             openapi_extra=body(Img2VidRequest, "The images, each with its seconds, and the output folder"))
async def video_img2vid(request: Request) -> JSONResponse:
    return await _submit(request, seed004.img2vid_jobs, group=True)


@router.post("/video/addaudio", summary="Replace a video's audio, shortest wins (earlier API)",
             responses=answers({200: LegacyResult, 202: JobAccepted}, *SUBMIT_ERRORS),
             openapi_extra=body(AddAudioRequest, "The video, the audio, and where the output lands"))
async def video_addaudio(request: Request) -> JSONResponse:
    return await _submit(request, lambda body, _g: seed004.addaudio_jobs(body))


@router.post("/transcribe", summary="Audio to segments.srt, karaoke.ass and words.json (earlier API)",
             responses=answers({200: LegacyResult, 202: JobAccepted}, *SUBMIT_ERRORS),
             openapi_extra=body(TranscribeRequest, "The audio, the output folder, and optionally model and language"))
async def transcribe(request: Request) -> JSONResponse:
    offered = job_models(request.app.state.settings)
    return await _submit(request, lambda body, _g: seed004.transcribe_jobs(body, offered))


def member_jobs(svc: JobService, tenant: str, job_id: str) -> list[JobRecord]:
    """The jobs behind an id this front door handed out: one job, or every image job of an img2vid group
    (found by their idempotency keys, so only the caller's own)."""
    size = seed004.group_size(job_id)
    if size is None:
        return [svc.get(tenant, job_id)]
    found = [j for n in range(1, size + 1) if (j := svc.by_idempotency_key(tenant, seed004.member_key(job_id, n)))]
    if not found:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    return found


async def _guarded(request: Request, work: Callable[[str], Awaitable[JSONResponse]]) -> JSONResponse:
    try:
        return await work(await tenant_of(request))
    except ReelForgeError as exc:
        return from_domain(exc)


@router.get("/job/{job_id}", summary="A job's status and, once done, its result (earlier API, RunPod-style)",
            responses=answers({200: LegacyJobStatus}, *READ_ERRORS, service=(422,)), openapi_extra=OWN_DOCS)
async def job_status(job_id: str, request: Request) -> JSONResponse:
    svc = service(request)

    async def work(tenant: str) -> JSONResponse:
        jobs = await run_db(request, member_jobs, svc, tenant, job_id)
        return JSONResponse(seed004.status_body(job_id, jobs, url_of(svc)))

    return await _guarded(request, work)


@router.post("/job/{job_id}/cancel", summary="Cancel a queued or running job (earlier API)",
             responses=answers({200: LegacyCancelled}, *READ_ERRORS, 409, service=(413, 422)),
             openapi_extra=OWN_DOCS)
async def job_cancel(job_id: str, request: Request) -> JSONResponse:
    svc = service(request)

    def cancel_all(tenant: str) -> list[JobRecord]:
        return [svc.cancel(tenant, j.id) for j in member_jobs(svc, tenant, job_id)]

    async def work(tenant: str) -> JSONResponse:
        jobs = await run_db(request, cancel_all, tenant)
        return JSONResponse({"id": job_id, "status": RUNPOD_STATUS[overall_status(jobs)]})

    return await _guarded(request, work)


# The earlier API had a health route per part; its clients poll them. Each answers the service's own /health.
_HEALTH_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "A part the service needs is down"}}


@router.get("/transcribe/health", summary="The earlier API's transcription health: this service's /health",
            response_model=Health, responses=_HEALTH_DOWN)
def transcribe_health(request: Request) -> JSONResponse:
    return health(request)


@router.get("/runpod/health", summary="The earlier API's GPU worker health: this service's /health",
            response_model=Health, responses=_HEALTH_DOWN)
def runpod_health(request: Request) -> JSONResponse:
    return health(request)
