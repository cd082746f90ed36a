"""Shared parameter types for operations (defined at the base layer, so planners below ops use them too).

`MediaRef` is an input reference: an uploaded file id (`file_...`), an http(s) URL, an `s3://bucket/key`
in the configured bucket, or (inside a pipeline) `step://<step>/<output>` — the grammar is reelforge/refs.py.
When params are validated by the API (validation context {"source": "api"}) the reference's form is checked
strictly at submit time; in tests and local use a plain local path is accepted and resolved by the context.
`Params` is the base model of every op's params (unknown fields are an error).
"""

from __future__ import annotations

from reelforge.refs import FILE_ID_RE, MediaRef
from reelforge.runtime import Params

__all__ = ["FILE_ID_RE", "MediaRef", "Params"]
