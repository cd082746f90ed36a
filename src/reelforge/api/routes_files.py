"""/v1/files: upload inputs (size-capped, streamed to storage), read their metadata and bytes."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from reelforge.api.auth import current_tenant
from reelforge.api.openapi import UPLOAD_BODY, binary_response, error_responses
from reelforge.api.ratelimit import rate_limit
from reelforge.api.schemas import FileView, file_view
from reelforge.diskspace import is_disk_full, require_free
from reelforge.errors import DiskFull, NotFound, PayloadTooLarge, UserError
from reelforge.jobs.store import FileRecord, new_file_id

router = APIRouter(prefix="/v1/files", tags=["files"])
Tenant = Annotated[str, Depends(current_tenant)]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_filename(name: str | None) -> str:
    base = Path(name or "upload.bin").name
    base = _SAFE_NAME.sub("_", base).strip("._") or "upload.bin"
    return base[-120:]


def _url(request: Request, rec: FileRecord) -> str:
    return f"{request.app.state.settings.service.public_url}/v1/files/{rec.id}/content"


_DISK_CHECK_EVERY = 16 * 1024 * 1024


async def _spool(chunks: Any, dest: Path, cap: int, reserve: int) -> tuple[int, str]:
    """Write an async byte stream to dest, enforcing the cap as bytes arrive (not just Content-Length), and
    the disk reserve every few MB (a chunked upload declares no size to check up front)."""
    size = 0
    next_check = _DISK_CHECK_EVERY
    digest = hashlib.sha256()
    with dest.open("wb") as fh:
        async for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"The upload is larger than the limit of {cap} bytes.", code="upload_too_large")
            if size >= next_check:
                next_check = size + _DISK_CHECK_EVERY
                require_free({dest.parent: len(chunk)}, reserve, "this upload")
            digest.update(chunk)
            await run_in_threadpool(fh.write, chunk)
    return size, digest.hexdigest()


@router.post("", status_code=201, response_model=FileView, summary="Upload a file (raw body or multipart)",
             dependencies=[Depends(rate_limit("upload"))], openapi_extra=UPLOAD_BODY, responses=error_responses(507))
async def upload_file(request: Request, tenant: Tenant,
                      filename: Annotated[str | None, Query(max_length=255)] = None) -> FileView:
    state = request.app.state
    settings = state.settings
    cap = settings.limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap + 64 * 1024:
        raise PayloadTooLarge(f"The upload is larger than the limit of {cap} bytes.", code="upload_too_large")
    tmp_dir = settings.work_dir / "uploads"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / uuid.uuid4().hex
    ctype = request.headers.get("content-type", "application/octet-stream")
    reserve = settings.limits.disk_reserve_bytes
    # local storage copies the spooled file into place: the upload needs its size twice on one disk
    stored_at = settings.storage_dir if settings.storage.backend == "local" else None
    if declared and declared.isdigit():
        require_free({tmp_dir: int(declared), **({stored_at: int(declared)} if stored_at else {})}, reserve,
                     "this upload")
    try:
        if ctype.startswith("multipart/form-data"):
            if not declared:
                raise UserError("Multipart uploads need a Content-Length header.", code="length_required")
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UserError("Send the file in a multipart field named 'file'.", code="missing_file")
            name = _safe_filename(filename or upload.filename)
            ctype = upload.content_type or "application/octet-stream"

            async def parts() -> Any:
                while chunk := await upload.read(1024 * 1024):
                    yield chunk

            size, sha = await _spool(parts(), tmp, cap, reserve)
        else:
            name = _safe_filename(filename)
            size, sha = await _spool(request.stream(), tmp, cap, reserve)
        if size == 0:
            raise UserError("The upload is empty.", code="empty_upload")
        if ctype in ("application/octet-stream", "application/x-www-form-urlencoded"):
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if stored_at is not None:
            require_free({stored_at: size}, reserve, "this upload")
        file_id = new_file_id()
        key = f"uploads/{tenant}/{file_id}/{name}"
        await run_in_threadpool(state.services.storage.put_file, tmp, key, ctype)
        rec = await run_in_threadpool(
            lambda: state.services.stores.files.create_file(tenant=tenant, filename=name, content_type=ctype, size=size,
                                                     sha256=sha, storage_key=key, file_id=file_id))
    except Exception as exc:  # ENOSPC while spooling or storing (SQLite: "database or disk is full")
        if isinstance(exc, DiskFull) or not is_disk_full(exc):
            raise
        raise DiskFull("The server's disk is full: the upload could not be stored. Try again later.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return file_view(rec, _url(request, rec))


def _get(request: Request, file_id: str, tenant: str) -> FileRecord:
    rec = request.app.state.services.stores.files.get_file(file_id, tenant)
    if rec is None:
        raise NotFound(f"No file {file_id!r}.", code="file_not_found")
    return rec


@router.get("/{file_id}", response_model=FileView, summary="An uploaded file's metadata")
def get_file(file_id: str, request: Request, tenant: Tenant) -> FileView:
    rec = _get(request, file_id, tenant)
    return file_view(rec, _url(request, rec))


@router.get("/{file_id}/content", summary="An uploaded file's bytes", response_model=None, response_class=Response,
            responses=binary_response("The file"))
def get_file_content(file_id: str, request: Request, tenant: Tenant) -> FileResponse | RedirectResponse:
    rec = _get(request, file_id, tenant)
    storage = request.app.state.services.storage
    local = storage.local_path(rec.storage_key)
    if local is not None:
        return FileResponse(local, media_type=rec.content_type, filename=rec.filename)
    url = storage.url(rec.storage_key, filename=rec.filename)
    if not url:
        raise NotFound("This file is not downloadable.", code="file_not_found")
    return RedirectResponse(url, status_code=307)
