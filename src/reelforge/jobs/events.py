"""Webhook event bodies, built in one place for every sender (job control, the job service)."""

from __future__ import annotations

import time
from typing import Any, Protocol


class _Job(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def op(self) -> str: ...


def job_event(job: _Job, event: str, **extra: Any) -> dict[str, Any]:
    """`{"type": "job.<state>", "job_id", "op", "at"}` plus the event's own fields."""
    return {"type": event, "job_id": job.id, "op": job.op, "at": time.time(), **extra}
