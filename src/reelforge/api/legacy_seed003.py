"""The users' earlier overlay service (seed 003) over HTTP.

    POST /overlay          the function's keyword arguments as JSON (video_url, container, threshold, feather,
                           engine, rembg_model, shape, circle_radius, circle_center_x, circle_center_y)
                           -> {overlay_url, duration, processing_time, status: "success", job_id}
                           (async mode, `?async=true` or `Prefer: respond-async`: {job_id, status: "processing"})
    GET  /overlay/result?job_id=...   -> {status: processing} | {status: completed, result} | {status: failed, error}

Thin: formats/seed003.py adds the function's defaults and shapes the answer; the `overlay` op itself takes
the seed-003 names (ops/_overlay_seed003.py). Submitted through JobService, waited for (bounded) as every
earlier-API call is (api/legacy_common.py). Docs: docs/FRONTDOOR_SEED003.md.
"""

from __future__ import annotations

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
    OverlayAccepted,
    OverlayJobResult,
    OverlayRequest,
    OverlayResult,
    answers,
    body,
)
from reelforge.errors import ReelForgeError
from reelforge.formats import seed003
from reelforge.jobs.service import JobCreate
from reelforge.jobs.states import JobStatus

router = APIRouter(tags=["earlier overlay service (seed 003)"])


@router.post("/overlay", summary="Talking-head video -> transparent overlay (the earlier overlay function)",
             responses=answers({200: OverlayResult, 202: OverlayAccepted}, *SUBMIT_ERRORS),
             openapi_extra=body(OverlayRequest, "process_video_overlay's keyword arguments"))
async def overlay(request: Request) -> JSONResponse:
    try:
        tenant = await submitting_tenant(request)
        params = seed003.overlay_params(await json_body(request))
        svc = service(request)
        job, _ = await svc.submit_async(tenant, JobCreate(op="overlay", params=params),
                                        notes={"frontdoor": seed003.FRONTDOOR})
        if wants_async(request):
            return JSONResponse({"job_id": job.id, "status": "processing"}, status_code=202,
                                headers={"Preference-Applied": "respond-async"})
        budget = wait_budget(request)
        (job,) = await wait_for(request, tenant, [job.id], budget)
        if job.status == JobStatus.SUCCEEDED:
            return JSONResponse(seed003.result_body(job.id, job, url_of(svc)))
        if not job.status.terminal:
            return pending_response(job.id, [job], accepted=False, waited_s=budget)
        return failed_response(job.id, [job])
    except ReelForgeError as exc:
        return from_domain(exc)


@router.get("/overlay/result", summary="An overlay job's result (the earlier service's get_result)",
            responses=answers({200: OverlayJobResult}, *READ_ERRORS, service=(422,)),
            openapi_extra=OWN_DOCS)
async def overlay_result(job_id: str, request: Request) -> JSONResponse:
    try:
        tenant = await tenant_of(request)
        svc = service(request)
        job = await run_db(request, svc.get, tenant, job_id)
    except ReelForgeError as exc:
        return from_domain(exc)
    if job.status == JobStatus.SUCCEEDED:
        return JSONResponse({"status": "completed", "result": seed003.result_body(job.id, job, url_of(svc))})
    if job.status.terminal:
        return JSONResponse({"status": "failed", "error": (job.error or {}).get("message") or job.status.value})
    return JSONResponse({"status": "processing"})
