"""Free disk space: how much a job or an upload may need, whether it fits, and what "disk full" looks like.

A full data disk must end the one job (or upload) that hit it with `disk_full`, never crash a worker slot
into a retry loop that fills the disk again. So work is checked against the free space before it starts
(an estimate, deliberately on the generous side, plus a configurable reserve kept free for the job store
and logs), and the ENOSPC that still happens mid-job is recognised wherever it surfaces: an OSError, an
ffmpeg stderr line, or SQLite's "database or disk is full".
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reelforge.errors import DiskFull
from reelforge.refs import is_file_id

MB = 1024 * 1024
# Output bytes per second of media a job asks for: 12 Mbit/s is above what the default encoders produce at
# 1080p (x264 CRF 21 veryfast, NVENC CQ), so the estimate errs on the side of refusing early.
OUTPUT_BYTES_PER_S = 1.5 * MB
# Inputs are copied into the job's work folder, decoded/re-encoded once or twice (intermediates), then the
# output is written and copied to storage.
INPUT_MULTIPLE = 3
OUTPUT_MULTIPLE = 2
BASE_BYTES = 16 * MB  # logs, probes, small intermediates of any job
_DURATION_KEY = re.compile(r"(^|_)(duration|seconds|length)(_s)?$")
_ENOSPC_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


def _existing(path: Path) -> Path:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding path (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(path)).free


def is_disk_full(exc: BaseException | str | None) -> bool:
    """True for ENOSPC / EDQUOT however it was reported (OSError, SQLite, ffmpeg's stderr in a message)."""
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, DiskFull):
            return True
        if any(t in str(exc).lower() for t in _ENOSPC_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return isinstance(exc, str) and any(t in exc.lower() for t in _ENOSPC_TEXT)


def file_ids(params: Any) -> list[str]:
    """Uploaded-file ids referenced anywhere in a job's params."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if is_file_id(value):
                found.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(params)
    return found


def requested_seconds(params: Any, cap_s: float) -> float:
    """Sum of the durations a job's params ask for (duration_s, seconds, clip lengths...), capped."""
    total = 0.0

    def walk(value: Any) -> None:
        nonlocal total
        if isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and _DURATION_KEY.search(str(k)):
                    total += max(0.0, float(v))
                else:
                    walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(params)
    return min(total, cap_s)


def estimate_job_bytes(params: Any, input_sizes: Iterable[int], *, max_duration_s: float) -> int:
    """A generous estimate of the disk a job uses at its peak: its inputs' copies and intermediates, the
    output implied by the durations it asks for, and a fixed base. Inputs fetched from URLs are not known
    before the fetch (which has its own size cap) and are not counted."""
    inputs = sum(max(0, s) for s in input_sizes)
    output = requested_seconds(params, max_duration_s) * OUTPUT_BYTES_PER_S
    return int(BASE_BYTES + INPUT_MULTIPLE * inputs + OUTPUT_MULTIPLE * output)


def require_free(needs: Mapping[Path, int], reserve: int, what: str) -> None:
    """Raise DiskFull unless each filesystem keeps `reserve` bytes free after the bytes that will be written
    to it (needs: place -> bytes; places on one filesystem add up)."""
    per_fs: dict[int, tuple[Path, int]] = {}
    for path, n in needs.items():
        place = _existing(path)
        dev = os.stat(place).st_dev
        per_fs[dev] = (place, per_fs.get(dev, (place, 0))[1] + max(0, int(n)))
    for place, need in per_fs.values():
        free = shutil.disk_usage(place).free
        if free - reserve < need:
            raise DiskFull(
                f"Not enough free disk space for {what}: it needs about {_mb(need)} and {_mb(free)} are free "
                f"({_mb(reserve)} are kept in reserve).")


def _mb(n: float) -> str:
    return f"{max(0.0, n) / MB:,.0f} MB" if n >= MB else f"{max(0.0, n) / 1024:,.0f} kB"
