"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reelforge.api.errors import ErrorBody
from reelforge.errors import wire_details
from reelforge.jobs.service import JobCreate
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import FileRecord, JobRecord

__all__ = ["FileView", "JobCreate", "JobList", "JobResult", "JobView", "OutputView", "file_view", "iso", "job_view"]


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


class OutputView(BaseModel):
    """One stored output of a finished job."""

    model_config = ConfigDict(extra="allow")

    url: str = Field(description="Where to download it: a presigned/public storage URL, or this service's "
                                 "`/v1/jobs/{id}/outputs/{name}`")
    filename: str
    content_type: str
    size: int
    sha256: str
    key: str = Field(description="The storage key")


class JobResult(BaseModel):
    outputs: dict[str, OutputView] = Field(description="Output name -> the stored file")
    data: dict[str, Any] = Field(description="The op's facts (durations, words, probe data, ...)")


class JobErrorBody(ErrorBody):
    """Why a job failed: the error shape, and the stage the job was in (its own stage is then "failed")."""

    stage: str | None = Field(default=None, description="The stage the job failed in, e.g. `encoding`")


class JobView(BaseModel):
    id: str
    tenant: str = Field(description="The tenant the job belongs to (the key's own, or any for an admin key)")
    op: str = Field(description="The operation (api/openapi.py lists the service's ops as an enum)")
    status: JobStatus
    stage: str | None
    progress: float
    queue: str
    priority: int
    params: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    attempts: int
    max_attempts: int
    timeout_s: float
    encoder: str | None = None
    device: str | None = None
    notes: dict[str, Any] = Field(default_factory=dict)
    result: JobResult | None = None
    error: JobErrorBody | None = None
    webhook_url: str | None = None
    webhook_attempts: list[dict[str, Any]] | None = None


def job_view(job: JobRecord, output_url: Any, webhook_attempts: list[dict[str, Any]] | None = None) -> JobView:
    result = None
    if job.result is not None:
        outputs = {}
        for name, meta in (job.result.get("outputs") or {}).items():
            outputs[name] = {**meta, "url": output_url(job, name, meta)}
        result = JobResult.model_validate({"outputs": outputs, "data": job.result.get("data") or {}})
    duration = None
    if job.started_at is not None:
        duration = round((job.finished_at or job.updated_at) - job.started_at, 3)
    return JobView(
        id=job.id, tenant=job.tenant, op=job.op, status=job.status, stage=job.stage,
        progress=round(job.progress, 4),
        queue=job.queue, priority=job.priority, params=job.params, created_at=iso(job.created_at),
        started_at=iso(job.started_at), finished_at=iso(job.finished_at), duration_s=duration,
        attempts=job.attempts, max_attempts=job.max_attempts, timeout_s=job.timeout_s,
        encoder=job.notes.get("encoder"), device=job.notes.get("device"), notes=job.notes, result=result,
        error=_error(job.error), webhook_url=job.webhook_url, webhook_attempts=webhook_attempts,
    )


def _error(error: dict[str, Any] | None) -> JobErrorBody | None:
    """A job's stored error in the wire shape (rows written before details were one shape included)."""
    if error is None:
        return None
    message = str(error.get("message") or "")
    stage = error.get("stage")
    return JobErrorBody(code=str(error.get("code") or "error"), message=message,
                        details=wire_details(error.get("details"), message),  # type: ignore[arg-type]
                        stage=str(stage) if stage else None)


class JobList(BaseModel):
    jobs: list[JobView]
    next_before: float | None = Field(description="Pass as `before` to get the next (older) page")


class FileView(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: str | None
    url: str


def file_view(rec: FileRecord, url: str) -> FileView:
    return FileView(id=rec.id, filename=rec.filename, content_type=rec.content_type, size=rec.size,
                    sha256=rec.sha256, created_at=iso(rec.created_at), url=url)


class WebhookReplay(BaseModel):
    job_id: str
    replayed: int = Field(description="events queued for delivery again (0: the job has had none yet)")
