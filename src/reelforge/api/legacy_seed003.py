"""The users' earlier overlay service (seed 003), as HTTP: one foreign format, one module.

    POST /overlay          the function's keyword arguments as JSON (video_url, container, threshold, feather,
                           engine, rembg_model, shape, circle_radius, circle_center_x, circle_center_y)
                           -> {overlay_url, duration, processing_time, status: "success", job_id}
                           (async mode, `?async=true` or `Prefer: respond-async`: {job_id, status: "processing"})
    GET  /overlay/result?job_id=...   -> {status: processing} | {status: completed, result} | {status: failed, error}

The body goes to the `overlay` op as it is: the op itself accepts the seed-003 names
(ops/_overlay_seed003.py). This module only fills in the earlier function's defaults (container mov,
threshold 0.6, feather 7, circle radius 0.35, centred), submits through JobService, waits (bounded, as
api/legacy_common.py does for every earlier-API call) and shapes the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reelforge.api.dbcalls import run_db
from reelforge.api.legacy_common import (
    LegacyError,
    error_response,
    failed_response,
    from_domain,
    json_body,
    pending_response,
    service,
    tenant_of,
    wait_budget,
    wait_for,
    wants_async,
)
from reelforge.errors import ReelForgeError
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord

router = APIRouter(tags=["earlier overlay service (seed 003)"])

# process_video_overlay's defaults (its rembg_model default only matters with engine "rembg")
DEFAULTS: dict[str, Any] = {"container": "mov", "threshold": 0.6, "feather": 7, "engine": "mediapipe",
                            "shape": "circle", "circle_radius": 0.35, "circle_center_x": 0.5, "circle_center_y": 0.5}


def overlay_params(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("video_url"), str) or not body["video_url"].strip():
        raise LegacyError(400, "video_url is required", "missing_fields")
    params = {**DEFAULTS, **body}
    if params.get("engine") == "rembg":
        params.setdefault("rembg_model", "u2net_human_seg")
    return params


def result_body(svc: JobService, job: JobRecord) -> dict[str, Any]:
    meta = ((job.result or {}).get("outputs") or {}).get("overlay")
    data = (job.result or {}).get("data") or {}
    fps = data.get("fps")
    try:
        num, _, den = str(fps).partition("/")
        duration = round(int(data.get("frames") or 0) / (float(num) / float(den or 1)), 3)
    except (ValueError, ZeroDivisionError):
        duration = None
    seconds = (job.finished_at or 0) - (job.started_at or job.created_at)
    return {"overlay_url": svc.output_url(job, "overlay", meta) if meta else None, "duration": duration,
            "processing_time": round(max(0.0, seconds), 3), "status": "success", "job_id": job.id,
            "engine": job.notes.get("engine"), "engine_mapping": job.notes.get("engine_mapping")}


@router.post("/overlay", summary="Talking-head video -> transparent overlay (the earlier overlay function)")
async def overlay(request: Request) -> JSONResponse:
    try:
        tenant = await tenant_of(request)
        params = overlay_params(await json_body(request))
        svc = service(request)
        job, _ = await svc.submit_async(tenant, JobCreate(op="overlay", params=params),
                                        notes={"frontdoor": "seed003"})
        if wants_async(request):
            return JSONResponse({"job_id": job.id, "status": "processing"}, status_code=202,
                                headers={"Preference-Applied": "respond-async"})
        budget = wait_budget(request)
        (job,) = await wait_for(request, tenant, [job.id], budget)
        if job.status == JobStatus.SUCCEEDED:
            return JSONResponse(result_body(svc, job))
        if not job.status.terminal:
            return pending_response(job.id, [job], accepted=False, waited_s=budget)
        return failed_response(job.id, [job])
    except LegacyError as exc:
        return error_response(exc.status, exc.message, exc.code)
    except ReelForgeError as exc:
        return from_domain(exc)


@router.get("/overlay/result", summary="An overlay job's result (the earlier service's get_result)")
async def overlay_result(job_id: str, request: Request) -> JSONResponse:
    try:
        tenant = await tenant_of(request)
        svc = service(request)
        job = await run_db(request, svc.get, tenant, job_id)
    except ReelForgeError as exc:
        return from_domain(exc)
    if job.status == JobStatus.SUCCEEDED:
        return JSONResponse({"status": "completed", "result": result_body(svc, job)})
    if job.status.terminal:
        return JSONResponse({"status": "failed", "error": (job.error or {}).get("message") or job.status.value})
    return JSONResponse({"status": "processing"})
