"""Shared parameter types for operations (defined at the base layer, so planners below ops use them too).

`MediaRef` is an input reference: an uploaded file id (`file_...`), an http(s) URL, an `s3://bucket/key`
in the configured bucket, or (inside a pipeline) `step://<step>/<output>` — the grammar is reelforge/refs.py.
When params are validated by the API (validation context {"source": "api"}) the reference's form is checked
strictly at submit time; in tests and local use a plain local path is accepted and resolved by the context.
`Params` is the base model of every op's params (unknown fields are an error).
`submit_context(settings)` is that validation context: it also carries what a submit-time check needs to
know about this service (its bucket, its voice folders, its model names), so a job that could only fail
at run time is refused at submit instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo

from reelforge.config import Settings
from reelforge.refs import FILE_ID_RE, MediaRef
from reelforge.runtime import Params

__all__ = ["FILE_ID_RE", "MediaRef", "Params", "context_settings", "submit_context"]


def submit_context(settings: Settings) -> dict[str, Any]:
    storage = settings.storage
    return {"source": "api", "allow_private": settings.limits.fetch_allow_private,
            # s3:// inputs are read with the service's own credentials, so only its bucket can work
            "s3_bucket": storage.s3_bucket if storage.backend == "s3" else None,
            "settings": settings}


def context_settings(info: ValidationInfo) -> Settings | None:
    """The service's settings when params are validated at submit (None in tests and local use)."""
    value = (info.context or {}).get("settings")
    return value if isinstance(value, Settings) else None
