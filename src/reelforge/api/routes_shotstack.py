"""The Shotstack-compatible Edit API: `POST /edit/{v1|stage}/render`, `GET /edit/{v}/render/{id}`.

HTTP in and out only. The edit is translated by reelforge.formats.shotstack into a native `render` job and
submitted through JobService like every other job; answers and errors keep Shotstack's envelope
(`{success, message, response}`), so a Shotstack client only changes its base URL and key.
See docs/FRONTDOOR_SHOTSTACK.md.
"""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from reelforge.api.auth import current_tenant
from reelforge.api.dbcalls import run_db
from reelforge.errors import NotFound, ReelForgeError
from reelforge.formats import shotstack
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.store import JobRecord
from reelforge.jobs.urls import output_urls

router = APIRouter(prefix="/edit", tags=["shotstack"])
VERSIONS = ("v1", "stage")


def _service(request: Request) -> JobService:
    return cast(JobService, request.app.state.jobs)


def _error(exc: ReelForgeError) -> JSONResponse:
    path = None
    if isinstance(exc.details, dict):
        path = exc.details.get("path")
    elif isinstance(exc.details, list) and exc.details and isinstance(exc.details[0], dict):
        path = exc.details[0].get("path")
    status = 400 if exc.http_status == 422 else exc.http_status
    return JSONResponse(shotstack.error_response(exc.message, exc.code, path), status_code=status)


def _version(version: str) -> None:
    if version not in VERSIONS:
        raise NotFound(f"No Edit API version {version!r}: use v1 or stage.")


@router.post("/{version}/render", status_code=201, summary="Shotstack: queue a render of an edit")
async def post_render(version: str, request: Request) -> JSONResponse:
    try:
        _version(version)
        tenant = await current_tenant(request)
        try:
            edit = json.loads(await request.body() or b"null")
        except ValueError:
            raise shotstack.InvalidEdit("body: not valid JSON.", details={"path": "body"}) from None
        translation = shotstack.translate(edit)
        body = JobCreate(op="render", params=translation.params, webhook_url=translation.callback)
        notes: dict[str, Any] = {"frontdoor": "shotstack", "shotstack_edit": edit}
        if translation.callback:
            notes["webhook_format"] = "shotstack"
        try:
            job, _created = await _service(request).submit_async(tenant, body, notes=notes)
        except ReelForgeError as exc:  # the native timeline's own checks: name the field in the edit's terms
            raise _in_edit_terms(exc, translation) from None
    except ReelForgeError as exc:
        return _error(exc)
    return JSONResponse(shotstack.queued_response(job.id), status_code=201)


@router.get("/{version}/render/{render_id}", summary="Shotstack: a render's status and URL")
async def get_render(version: str, render_id: str, request: Request, data: bool = Query(default=True),
                     merged: bool = Query(default=False)) -> JSONResponse:
    try:
        _version(version)
        tenant = await current_tenant(request)
        service = _service(request)
        job = await run_db(request, service.get, tenant, shotstack.job_id(render_id))
        if job.notes.get("frontdoor") != "shotstack":
            raise NotFound(f"No render {render_id!r}.", code="job_not_found")
    except ReelForgeError as exc:
        return _error(exc)
    edit = job.notes.get("shotstack_edit")
    if edit is not None and merged:
        edit = shotstack.apply_merge(edit)
    urls = output_urls(service.settings, service.storage, job.id, job.result)
    return JSONResponse(shotstack.render_response(_facts(job), urls, edit if data else None))


def _facts(job: JobRecord) -> shotstack.JobFacts:
    return shotstack.JobFacts(id=job.id, owner=job.tenant, status=job.status.value, stage=job.stage,
                              progress=job.progress, created_at=job.created_at, updated_at=job.updated_at,
                              started_at=job.started_at, finished_at=job.finished_at, error=job.error,
                              result=job.result)


def _in_edit_terms(exc: ReelForgeError, translation: shotstack.Translation) -> ReelForgeError:
    """A native validation error's path (params.timeline.tracks[0]...) as the edit's (timeline.tracks[0]...,
    the edit's own track and clip where a track was split into lanes)."""
    if isinstance(exc.details, list):
        for item in exc.details:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                native = item["path"].removeprefix("params.")
                item["path"] = translation.edit_path(native)
                if isinstance(item.get("message"), str):  # an op's own check repeats its path first
                    item["message"] = item["message"].removeprefix(f"{native}: ")
        if exc.details and isinstance(exc.details[0], dict):
            first = exc.details[0]
            exc.message = f"{first.get('path')}: {first.get('message')}"
    return exc
