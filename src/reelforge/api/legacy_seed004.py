"""The users' earlier API (seed 004), translated onto the native ops: one foreign format, one module.

    POST /video/caption    {url_video, url_srt, path, output_filename}   -> caption     (video_url)
    POST /video/img2vid    {images: [{id, image_url, duracao}], path}    -> one img2vid job per image, in
                                                                            parallel (videos[]: video_1.mp4 ...)
    POST /video/addaudio   {url_video, url_audio, path, output_filename} -> add_audio, fit shortest
    POST /transcribe       {audio_url, path, model?, language?}          -> transcribe (segments.srt,
                                                                            karaoke.ass, words.json)
    GET  /job/{id}, POST /job/{id}/cancel                                   RunPod-style status / cancel
    (GET /health is the service's own)

Each call is a thin translation: the request body becomes JobCreate(s) with `output_paths` (the client's
`path` + file name, placed under the tenant's delivery root by JobService), submitted through JobService;
the answer is the earlier API's envelope built from the finished job rows (api/legacy_common.py waits,
bounded, or answers at once in async mode). No media work and no op logic here.

The images of one img2vid call are separate jobs (they run on as many slots or workers as are free); they
share a group id `i2v_<hex>_<count>`, and each is found again through its idempotency key
`seed004:<group>:<n>`, so GET /job/{group} needs no table of its own and sees only the caller's jobs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reelforge.api.dbcalls import run_db
from reelforge.api.legacy_common import (
    RUNPOD_STATUS,
    LegacyError,
    error_response,
    failed_response,
    from_domain,
    json_body,
    overall_status,
    pending_response,
    service,
    tenant_of,
    timing,
    wait_budget,
    wait_for,
    wants_async,
)
from reelforge.errors import NotFound, ReelForgeError
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord
from reelforge.models.whisper import job_models

router = APIRouter(tags=["earlier API (seed 004)"])

FRONTDOOR = "seed004"
GROUP_RE = re.compile(r"^i2v_[0-9a-f]{20}_([1-9][0-9]{0,2})$")
MAX_IMAGES = 200
# the earlier worker: 1920x1080 at 24 fps, zoom 1.0 -> 1.324 over the clip
IMG2VID = {"size": "1920x1080", "fps": 24, "effect": "zoom_in", "zoom": 0.324, "easing": "linear", "join": False}
TRANSCRIBE_FILES = {"segments_srt": "segments.srt", "captions": "karaoke.ass", "words": "words.json"}
MESSAGES = {
    "caption": "Video caption completed and uploaded to S3 successfully",
    "img2vid": "Images converted to videos and uploaded to S3 successfully",
    "addaudio": "Video addaudio completed and uploaded to S3 successfully",
    "transcribe": "Transcription completed and uploaded to S3 successfully",
}


# ---------------------------------------------------------------- request bodies -> submissions
def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _require(body: dict[str, Any], names: tuple[str, ...], message: str) -> list[str]:
    values = [_text(body, n) for n in names]
    if any(v is None for v in values):
        raise LegacyError(400, message, "missing_fields")
    return [v.strip() for v in values if v is not None]


def _folder(path: str) -> str:
    return path.strip().rstrip("/") + "/" if path.strip().rstrip("/") else ""


def _notes(kind: str, **extra: Any) -> dict[str, Any]:
    return {"frontdoor": FRONTDOOR, FRONTDOOR: {"kind": kind, **extra}}


def caption_jobs(body: dict[str, Any]) -> list[tuple[JobCreate, dict[str, Any]]]:
    video, srt, path, name = _require(body, ("url_video", "url_srt", "path", "output_filename"),
                                      "url_video, url_srt, path, and output_filename are required")
    job = JobCreate(op="caption", params={"input": video, "subtitles": srt, "format": "srt"},
                    output_paths={"video": _folder(path) + name})
    return [(job, _notes("caption"))]


def addaudio_jobs(body: dict[str, Any]) -> list[tuple[JobCreate, dict[str, Any]]]:
    video, audio, path, name = _require(body, ("url_video", "url_audio", "path", "output_filename"),
                                        "url_video, url_audio, path, and output_filename are required")
    job = JobCreate(op="add_audio", params={"video": video, "audio": audio, "mode": "replace", "fit": "shortest"},
                    output_paths={"video": _folder(path) + name})
    return [(job, _notes("addaudio"))]


def transcribe_jobs(body: dict[str, Any], offered: Collection[str] = ()) -> list[tuple[JobCreate, dict[str, Any]]]:
    """`offered`: the whisper model names a job may pick here; another `model` (the earlier API took any of
    tiny .. large-v3, turbo) runs the service's default model, and the job's notes say so."""
    audio = _text(body, "audio_url") or _text(body, "url_audio")
    path = _text(body, "path")
    if audio is None or path is None:
        raise LegacyError(400, "audio_url and path are required", "missing_fields")
    params: dict[str, Any] = {"input": audio.strip()}
    language = body.get("language")
    if language is not None:
        if not isinstance(language, str):
            raise LegacyError(400, "language must be a string such as 'en' or 'auto'")
        params["language"] = language
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or len(model) > 64):
        raise LegacyError(400, "model must be a model name such as 'base' or 'large-v3'")
    extra: dict[str, Any] = {}
    if model:
        extra["model_requested"] = model
        if model.strip() in offered:
            params["model"] = model.strip()
        else:
            extra["model_note"] = (f"whisper model {model!r} is not offered here; the service's default ran "
                                   "(notes.whisper_model)")
    folder = _folder(path)
    job = JobCreate(op="transcribe", params=params,
                    output_paths={name: folder + filename for name, filename in TRANSCRIBE_FILES.items()})
    return [(job, _notes("transcribe", **extra))]


def img2vid_jobs(body: dict[str, Any], group: str) -> list[tuple[JobCreate, dict[str, Any]]]:
    images = body.get("images")
    if not isinstance(images, list) or not images:
        raise LegacyError(400, "images array is required with at least one image", "missing_fields")
    path = _text(body, "path")
    if path is None:
        raise LegacyError(400, "path is required", "missing_fields")
    if len(images) > MAX_IMAGES:
        raise LegacyError(400, f"images may hold at most {MAX_IMAGES} images")
    folder = _folder(path)
    jobs = []
    for n, image in enumerate(images, start=1):
        if not isinstance(image, dict) or _text(image, "image_url") is None or image.get("id") in (None, ""):
            raise LegacyError(400, f"images[{n - 1}] needs id, image_url and duracao", "missing_fields")
        duration = image.get("duracao")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            raise LegacyError(400, f"images[{n - 1}].duracao must be a number of seconds above 0", "missing_fields")
        params = {**IMG2VID, "images": [{"image": str(image["image_url"]).strip(), "duration_s": duration}]}
        filename = f"video_{n}.mp4"
        job = JobCreate(op="img2vid", params=params, output_paths={"clip_001": folder + filename},
                        idempotency_key=f"{FRONTDOOR}:{group}:{n}")
        jobs.append((job, _notes("img2vid", group=group, index=n, id=str(image["id"]), filename=filename)))
    return jobs


# ---------------------------------------------------------------- finished jobs -> the earlier envelope
def _url(svc: JobService, job: JobRecord, name: str) -> str | None:
    meta = ((job.result or {}).get("outputs") or {}).get(name)
    return svc.output_url(job, name, meta) if meta else None


def _meta(job: JobRecord) -> dict[str, Any]:
    value = job.notes.get(FRONTDOOR)
    return value if isinstance(value, dict) else {}


def envelope(svc: JobService, job_id: str, jobs: list[JobRecord]) -> dict[str, Any]:
    """The earlier API's 200 body for finished jobs (all of one call)."""
    kind = _meta(jobs[0]).get("kind")
    execution, times = timing(jobs)
    stats: dict[str, Any] = {"jobId": job_id, **times}
    body: dict[str, Any] = {"code": 200, "message": MESSAGES.get(str(kind), "Job completed successfully")}
    first = jobs[0]
    if kind == "img2vid":
        body["videos"] = [{"id": _meta(j).get("id"), "video_url": _url(svc, j, "clip_001"),
                           "filename": _meta(j).get("filename")} for j in jobs]
        stats |= {"total": len(jobs), "processed": sum(j.status == JobStatus.SUCCEEDED for j in jobs)}
    elif kind == "transcribe":
        data = (first.result or {}).get("data") or {}
        body["transcription"] = {"text": data.get("text"), "language": data.get("language"),
                                 "duration": data.get("duration_s"), "segments": data.get("segments"),
                                 "words": data.get("words")}
        body["files"] = {"segments": {"srt": _url(svc, first, "segments_srt")},
                         "karaoke": {"ass": _url(svc, first, "captions")},
                         "words": {"json": _url(svc, first, "words")}}
        body["model"] = {"requested": _meta(first).get("model_requested"), "used": first.notes.get("whisper_model"),
                         "note": _meta(first).get("model_note")}
    elif kind in ("caption", "addaudio"):
        body["video_url"] = _url(svc, first, "video")
    else:  # a job submitted some other way: every output's URL
        body["outputs"] = {name: _url(svc, first, name) for name in ((first.result or {}).get("outputs") or {})}
    return {**body, "execution": execution, "stats": stats}


# ---------------------------------------------------------------- routes
async def _submit(request: Request, build: Callable[[dict[str, Any], str], list[tuple[JobCreate, dict[str, Any]]]],
                  group: bool = False) -> JSONResponse:
    try:
        tenant = await tenant_of(request)
        body = await json_body(request)
        images = body.get("images")
        gid = f"i2v_{uuid.uuid4().hex[:20]}_{len(images) if isinstance(images, list) else 0}" if group else ""
        planned = build(body, gid)
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
        return _answer(svc, job_id, jobs, budget)
    except LegacyError as exc:
        return error_response(exc.status, exc.message, exc.code)
    except ReelForgeError as exc:
        return from_domain(exc)


def _answer(svc: JobService, job_id: str, jobs: list[JobRecord], waited_s: float) -> JSONResponse:
    status = overall_status(jobs)
    if status == JobStatus.SUCCEEDED:
        return JSONResponse(envelope(svc, job_id, jobs))
    if not status.terminal:
        return pending_response(job_id, jobs, accepted=False, waited_s=waited_s)
    return failed_response(job_id, jobs)


@router.post("/video/caption", summary="Burn SRT subtitles into a video (earlier API)")
async def video_caption(request: Request) -> JSONResponse:
    return await _submit(request, lambda body, _g: caption_jobs(body))


@router.post("/video/img2vid", summary="Images to Ken Burns videos, one per image (earlier API)")
async def video_img2vid(request: Request) -> JSONResponse:
    return await _submit(request, img2vid_jobs, group=True)


@router.post("/video/addaudio", summary="Replace a video's audio, shortest wins (earlier API)")
async def video_addaudio(request: Request) -> JSONResponse:
    return await _submit(request, lambda body, _g: addaudio_jobs(body))


@router.post("/transcribe", summary="Audio to segments.srt, karaoke.ass and words.json (earlier API)")
async def transcribe(request: Request) -> JSONResponse:
    offered = job_models(request.app.state.settings)
    return await _submit(request, lambda body, _g: transcribe_jobs(body, offered))


def member_jobs(svc: JobService, tenant: str, job_id: str) -> list[JobRecord]:
    """The jobs behind an id this front door handed out: one job, or every image job of an img2vid group."""
    m = GROUP_RE.match(job_id)
    if m is None:
        return [svc.get(tenant, job_id)]
    jobs = [svc.by_idempotency_key(tenant, f"{FRONTDOOR}:{job_id}:{n}") for n in range(1, int(m.group(1)) + 1)]
    found = [j for j in jobs if j is not None]
    if not found:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    return found


def status_body(svc: JobService, job_id: str, jobs: list[JobRecord]) -> dict[str, Any]:
    status = overall_status(jobs)
    _, times = timing(jobs)
    body: dict[str, Any] = {"id": job_id, "status": RUNPOD_STATUS[status], **times,
                            "progress": round(sum(j.progress for j in jobs) / len(jobs), 4)}
    if status == JobStatus.SUCCEEDED:
        body["output"] = envelope(svc, job_id, jobs)
    elif status.terminal:
        bad = next(j for j in jobs if j.status == status)
        body["error"] = (bad.error or {}).get("message") or status.value
        body["error_code"] = (bad.error or {}).get("code")
    return body


async def _guarded(request: Request, work: Callable[[str], Awaitable[JSONResponse]]) -> JSONResponse:
    try:
        return await work(await tenant_of(request))
    except ReelForgeError as exc:
        return from_domain(exc)


@router.get("/job/{job_id}", summary="A job's status and, once done, its result (earlier API, RunPod-style)")
async def job_status(job_id: str, request: Request) -> JSONResponse:
    svc = service(request)

    async def work(tenant: str) -> JSONResponse:
        jobs = await run_db(request, member_jobs, svc, tenant, job_id)
        return JSONResponse(status_body(svc, job_id, jobs))

    return await _guarded(request, work)


@router.post("/job/{job_id}/cancel", summary="Cancel a queued or running job (earlier API)")
async def job_cancel(job_id: str, request: Request) -> JSONResponse:
    svc = service(request)

    def cancel_all(tenant: str) -> list[JobRecord]:
        return [svc.cancel(tenant, j.id) for j in member_jobs(svc, tenant, job_id)]

    async def work(tenant: str) -> JSONResponse:
        jobs = await run_db(request, cancel_all, tenant)
        return JSONResponse({"id": job_id, "status": RUNPOD_STATUS[overall_status(jobs)]})

    return await _guarded(request, work)
