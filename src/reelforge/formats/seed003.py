"""The users' earlier overlay call (seed 003) over HTTP: its body -> `overlay` params, a job -> its answer.

Pure functions, no I/O (the front door is api/legacy_seed003.py). The `overlay` op itself accepts the
function's parameter names (ops/_overlay_seed003.py); this module only adds the function's defaults, which
differ from the op's (container mov, threshold 0.6, feather 7, circle radius 0.35), and shapes
`{overlay_url, duration, processing_time, status}` from the finished job.
"""

from __future__ import annotations

from typing import Any

from reelforge.errors import UserError
from reelforge.formats.seed004 import JobFacts, UrlOf

FRONTDOOR = "seed003"
# process_video_overlay's defaults (its rembg_model default only matters with engine "rembg")
DEFAULTS: dict[str, Any] = {"container": "mov", "threshold": 0.6, "feather": 7, "engine": "mediapipe",
                            "shape": "circle", "circle_radius": 0.35, "circle_center_x": 0.5, "circle_center_y": 0.5}


def overlay_params(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("video_url"), str) or not body["video_url"].strip():
        raise UserError("video_url is required", code="missing_fields")
    params = {**DEFAULTS, **body}
    if params.get("engine") == "rembg":
        params.setdefault("rembg_model", "u2net_human_seg")
    return params


def _duration(data: dict[str, Any]) -> float | None:
    try:
        num, _, den = str(data.get("fps")).partition("/")
        return round(int(data.get("frames") or 0) / (float(num) / float(den or 1)), 3)
    except (ValueError, ZeroDivisionError):
        return None


def result_body(job_id: str, job: JobFacts, url: UrlOf) -> dict[str, Any]:
    data = (job.result or {}).get("data") or {}
    seconds = (job.finished_at or 0) - (job.started_at or job.created_at)
    return {"overlay_url": url(job, "overlay"), "duration": _duration(data),
            "processing_time": round(max(0.0, seconds), 3), "status": "success", "job_id": job_id,
            "engine": job.notes.get("engine"), "engine_mapping": job.notes.get("engine_mapping")}
