"""Webhook event bodies, built in one place for every sender (job control, the job service)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from reelforge.formats import shotstack

if TYPE_CHECKING:
    from reelforge.jobs.store_jobs import JobRecord

WEBHOOK_FORMATS = ("reelforge", "shotstack")  # a job's notes.webhook_format; default reelforge


class _Job(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def op(self) -> str: ...


def job_event(job: _Job, event: str, **extra: Any) -> dict[str, Any]:
    """`{"type": "job.<state>", "job_id", "op", "at"}` plus the event's own fields."""
    return {"type": event, "job_id": job.id, "op": job.op, "at": time.time(), **extra}


def sends_progress(webhook_format: str | None) -> bool:
    """Whether running/progress events go out (a Shotstack callback hears only the end)."""
    return webhook_format != "shotstack"


def terminal_event(job: _Job, status: str, result: dict[str, Any] | None, error: dict[str, Any] | None, *,
                   webhook_format: str | None = None, row: JobRecord | None = None,
                   urls: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The body of a job's last event in its webhook format (`row` and `urls` are needed for shotstack)."""
    if webhook_format == "shotstack" and row is not None:
        facts = shotstack.JobFacts(id=row.id, owner=row.tenant, status=status, stage=row.stage,
                                   progress=row.progress, created_at=row.created_at, updated_at=row.updated_at,
                                   started_at=row.started_at, finished_at=row.finished_at or time.time(),
                                   error=error, result=result)
        return shotstack.callback_body(facts, urls or {})
    return job_event(job, f"job.{status}", status=status, result=result, error=error)
