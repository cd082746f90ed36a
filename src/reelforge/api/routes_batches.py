"""/v1/batches and /v1/presets over HTTP; every decision is jobs/batches.py's (BatchService)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from reelforge.api.auth import current_tenant
from reelforge.api.openapi import error_responses
from reelforge.api.ratelimit import rate_limit
from reelforge.jobs.batch_config import PRESET_NAME
from reelforge.jobs.batches import BatchCreate, BatchService, PresetBody
from reelforge.jobs.store_batches import ITEM_STATES

router = APIRouter(tags=["batches"])
Tenant = Annotated[str, Depends(current_tenant)]
PresetName = Annotated[str, Path(pattern=PRESET_NAME, description="1-64 letters, digits, '.', '_' or '-'")]


def _service(request: Request) -> BatchService:
    return cast(BatchService, request.app.state.batches)


@router.post("/v1/batches", status_code=202, summary="Create a batch (or plan one: dry_run)",
             dependencies=[Depends(rate_limit("submit"))],
             responses={200: {"description": "dry_run: the items and jobs that would run; nothing created"},
                        **error_responses(404)},  # a named preset that does not exist
             description="One job per object under `prefix`, per entry of `inputs`, or per manifest row. Every "
                         "item is validated first; a bad item is a 422 naming it and nothing is created. With "
                         "`dry_run` the answer lists the items and jobs and nothing changes.")
async def create_batch(body: BatchCreate, request: Request, tenant: Tenant) -> JSONResponse:
    view = await run_in_threadpool(_service(request).create, tenant, body)
    return JSONResponse(view, status_code=200 if body.dry_run else 202)


@router.get("/v1/batches", summary="This tenant's batches, newest first")
def list_batches(request: Request, tenant: Tenant, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 before: float | None = None) -> dict[str, Any]:
    service = _service(request)
    found = service.list_batches(tenant, limit, before)
    return {"batches": [service.view(b) for b in found],
            "next_before": found[-1].created_at if len(found) == limit else None}


@router.get("/v1/batches/{batch_id}", summary="A batch: counts by item state, progress, ETA, results")
def get_batch(batch_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    service = _service(request)
    return service.view(service.get(tenant, batch_id))


@router.get("/v1/batches/{batch_id}/items", summary="A batch's items in order, with their jobs")
def batch_items(batch_id: str, request: Request, tenant: Tenant,
                status: Annotated[list[Literal[ITEM_STATES]] | None, Query()] = None,  # type: ignore[valid-type]
                offset: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    items = _service(request).items(tenant, batch_id, status=list(status or []), offset=offset, limit=limit)
    return {"items": items, "next_offset": offset + len(items) if len(items) == limit else None}


@router.post("/v1/batches/{batch_id}/cancel", summary="Cancel a batch: pending items never run, running jobs stop")
def cancel_batch(batch_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    return _service(request).control(tenant, batch_id, "cancel")


@router.post("/v1/batches/{batch_id}/pause", summary="Pause a batch: no new jobs; running ones finish")
def pause_batch(batch_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    return _service(request).control(tenant, batch_id, "pause")


@router.post("/v1/batches/{batch_id}/resume", summary="Resume a paused batch")
def resume_batch(batch_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    return _service(request).control(tenant, batch_id, "resume")


@router.get("/v1/batches/{batch_id}/results", summary="results.json or results.csv: item -> status, outputs, error")
def batch_results(batch_id: str, request: Request, tenant: Tenant,
                  format: Literal["json", "csv"] = "json") -> Response:
    data = _service(request).results(tenant, batch_id, format)
    media = "application/json" if format == "json" else "text/csv"
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="results.{format}"'})


@router.get("/v1/presets", summary="This tenant's presets")
def list_presets(request: Request, tenant: Tenant) -> dict[str, Any]:
    return {"presets": _service(request).store.list_presets(tenant)}


@router.get("/v1/presets/{name}", summary="One preset")
def get_preset(name: PresetName, request: Request, tenant: Tenant) -> dict[str, Any]:
    return _service(request).get_preset(tenant, name)


@router.put("/v1/presets/{name}", summary="Create or replace a preset (batch values: op, params, ...)")
def put_preset(name: PresetName, body: PresetBody, request: Request, tenant: Tenant) -> dict[str, Any]:
    return _service(request).put_preset(tenant, name, body.stored())


@router.delete("/v1/presets/{name}", status_code=204, summary="Remove a preset")
def delete_preset(name: PresetName, request: Request, tenant: Tenant) -> Response:
    _service(request).delete_preset(tenant, name)
    return Response(status_code=204)
