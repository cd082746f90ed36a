"""The Shotstack-compatible Edit API: `POST /edit/{v1|stage}/render`, `GET /edit/{v}/render/{id}`.

HTTP in and out only. The edit is translated by reelforge.formats.shotstack into a native `render` job and
submitted through JobService like every other job; answers and errors keep Shotstack's envelope
(`{success, message, response}`), so a Shotstack client only changes its base URL and key.
See docs/FRONTDOOR_SHOTSTACK.md.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reelforge.api.auth import current_tenant
from reelforge.api.dbcalls import run_db
from reelforge.api.errors import STATUS_TEXT, ErrorResponse
from reelforge.api.openapi import OWN_ERRORS
from reelforge.api.ratelimit import take
from reelforge.errors import NotFound, RateLimited, ReelForgeError
from reelforge.formats import shotstack
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.store import JobRecord
from reelforge.jobs.urls import output_urls

router = APIRouter(prefix="/edit", tags=["shotstack"])
VERSIONS = ("v1", "stage")

# ---- the OpenAPI document: Shotstack's own envelope on every answer, so the service-wide rules (ErrorResponse
# on each error status, api/openapi.py) are replaced by what these routes really send (OWN_ERRORS)
class ShotstackErrorDetail(BaseModel):
    error: str
    code: str = Field(description="ReelForge's error code")
    field: str | None = Field(default=None, description="The edit's field at fault")


class ShotstackError(BaseModel):
    success: Literal[False]
    message: str
    response: ShotstackErrorDetail


class ShotstackQueuedDetail(BaseModel):
    message: str
    id: str


class ShotstackQueued(BaseModel):
    success: Literal[True]
    message: str
    response: ShotstackQueuedDetail


class ShotstackRenderDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # owner, plan, url, poster, data, created... (formats/shotstack.py)

    id: str
    status: Literal["queued", "fetching", "rendering", "saving", "done", "failed"]


class ShotstackRender(BaseModel):
    success: Literal[True]
    message: str
    response: ShotstackRenderDetail


def _answers(ok_status: int, ok: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    """`responses=`: the success body and the Shotstack-shaped errors."""
    out: dict[int | str, dict[str, Any]] = {ok_status: {"model": ok, "description": "Shotstack's envelope"}}
    for status in errors:
        out[status] = {"model": ShotstackError,
                       "description": f"{STATUS_TEXT.get(status, 'Error')} (Shotstack's envelope)"}
    return out


def _service_error(status: int) -> dict[int | str, dict[str, Any]]:
    """413 (the body limit) and 422 (a query parameter FastAPI cannot read) come from the service's own layers,
    in its ErrorResponse shape."""
    return {status: {"model": ErrorResponse, "description": STATUS_TEXT[status]}}


_EDIT_BODY = {"required": True, "description": "A Shotstack edit: {timeline, output, merge?, callback?, disk?} "
                                               "(docs/FRONTDOOR_SHOTSTACK.md lists what is supported; the rest is "
                                               "refused with a 400 naming the field)",
              "content": {"application/json": {"schema": {"title": "ShotstackEdit", "type": "object"}}}}


def _service(request: Request) -> JobService:
    return cast(JobService, request.app.state.jobs)


def _error(exc: ReelForgeError) -> JSONResponse:
    path = None
    if isinstance(exc.details, dict):
        path = exc.details.get("path")
    elif isinstance(exc.details, list) and exc.details and isinstance(exc.details[0], dict):
        path = exc.details[0].get("path")
    status = 400 if exc.http_status == 422 else exc.http_status
    headers = exc.headers if isinstance(exc, RateLimited) else None  # Retry-After
    return JSONResponse(shotstack.error_response(exc.message, exc.code, path), status_code=status, headers=headers)


def _version(version: str) -> None:
    if version not in VERSIONS:
        raise NotFound(f"No Edit API version {version!r}: use v1 or stage.")


@router.post("/{version}/render", status_code=201, summary="Shotstack: queue a render of an edit",
             responses={**_answers(201, ShotstackQueued, 400, 401, 403, 404, 409, 429, 503, 507), **_service_error(413),
                        **_service_error(422)},
             openapi_extra={OWN_ERRORS: True, "requestBody": _EDIT_BODY})
async def post_render(version: str, request: Request) -> JSONResponse:
    try:
        _version(version)
        tenant = await current_tenant(request)
        await take(request, tenant, "submit")
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


@router.get("/{version}/render/{render_id}", summary="Shotstack: a render's status and URL",
            responses={**_answers(200, ShotstackRender, 401, 403, 404, 503), **_service_error(422)},
            openapi_extra={OWN_ERRORS: True})
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
