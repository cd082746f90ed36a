"""Shared parameter types for operations.

`MediaRef` is an input reference: an uploaded file id (`file_...`), an http(s) URL, an `s3://bucket/key`
in the configured bucket, or (inside a pipeline) `step://<step>/<output>`. When params are validated by
the API (validation context {"source": "api"}) the reference's form is checked strictly at submit time;
in tests and local use a plain local path is accepted and resolved by the context.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

FILE_ID_RE = re.compile(r"^file_[0-9a-f]{32}$")
REF_SCHEMES = ("http://", "https://", "s3://", "step://")


def _check_ref(value: str, info: ValidationInfo) -> str:
    value = value.strip()
    if not value:
        raise ValueError("an input reference must not be empty")
    ctx: dict[str, Any] = info.context or {}
    if ctx.get("source") == "api" and not (FILE_ID_RE.match(value) or value.startswith(REF_SCHEMES)):
        raise ValueError(
            "must be an uploaded file id (file_...), an http(s) URL, or an s3:// key in the configured bucket"
        )
    if value.startswith(("http://", "https://")) and ctx.get("source") == "api":
        from reelforge.storage.urlguard import check_url_syntax

        check_url_syntax(value, allow_private=bool(ctx.get("allow_private")))
    return value


MediaRef = Annotated[str, AfterValidator(_check_ref)]


class Params(BaseModel):
    """Base for every operation's params: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
