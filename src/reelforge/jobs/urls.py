"""Where a client downloads a job's output: one rule for the job routes, front doors and webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reelforge.config import Settings
from reelforge.storage.base import Storage


def output_url(settings: Settings, storage: Storage, job_id: str, name: str, meta: Mapping[str, Any]) -> str:
    """The storage's own URL (S3: public base or presigned), else this service's download route."""
    direct = storage.url(meta["key"], filename=meta.get("filename"))
    return direct or f"{settings.service.public_url}/v1/jobs/{job_id}/outputs/{name}"


def output_urls(settings: Settings, storage: Storage, job_id: str, result: Mapping[str, Any] | None) -> dict[str, str]:
    """Every output of a finished job by name."""
    outputs = (result or {}).get("outputs") or {}
    return {name: output_url(settings, storage, job_id, name, meta) for name, meta in outputs.items()}
