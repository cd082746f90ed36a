"""The OpenAPI models of the earlier API's front doors (api/legacy_seed004.py, api/legacy_seed003.py).

Documentation only: the routes read their bodies themselves (formats/seed004.py, seed003.py), so a missing
field keeps the earlier API's own 400 sentence instead of a 422 from FastAPI. These models say what a body
holds and what every answer looks like, so a generated client gets typed models for them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelforge.api.errors import STATUS_TEXT, ErrorResponse
from reelforge.api.openapi import KEY_SECURITY, OWN_AUTH, OWN_ERRORS, json_body
from reelforge.formats.seed004 import MAX_IMAGES

RunPodStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]


# ---- request bodies
class CaptionRequest(BaseModel):
    url_video: str = Field(min_length=1, description="The video's URL")
    url_srt: str = Field(min_length=1, description="The SRT subtitles' URL")
    path: str = Field(min_length=1, description="Folder under the tenant's delivery root, e.g. `Project/videos/`")
    output_filename: str = Field(min_length=1, description="The output's file name, e.g. `video_legendado.mp4`")


class AddAudioRequest(BaseModel):
    url_video: str = Field(min_length=1)
    url_audio: str = Field(min_length=1, description="Replaces the video's audio; the shorter input wins")
    path: str = Field(min_length=1)
    output_filename: str = Field(min_length=1)


class Img2VidImage(BaseModel):
    id: str | int = Field(description="The client's id, echoed in `videos[].id`")
    image_url: str = Field(min_length=1)
    duracao: float = Field(gt=0, description="Seconds of video for this image")


class Img2VidRequest(BaseModel):
    images: list[Img2VidImage] = Field(min_length=1, max_length=MAX_IMAGES,
                                       description="One job per image: `video_1.mp4`, `video_2.mp4`, ...")
    path: str = Field(min_length=1)


class TranscribeRequest(BaseModel):
    audio_url: str = Field(min_length=1, description="The audio (or video) to transcribe; `url_audio` also works")
    path: str = Field(min_length=1)
    model: str | None = Field(default=None, max_length=64,
                              description="A whisper model name; one not offered here runs the default")
    language: str | None = Field(default=None, description="`en`, `pt`, ... or `auto`")


class OverlayRequest(BaseModel):
    """process_video_overlay's keyword arguments (omitted: the function's defaults, docs/FRONTDOOR_SEED003.md)."""

    video_url: str = Field(min_length=1)
    container: Literal["mov", "webm"] = "mov"
    threshold: float = Field(default=0.6, ge=0, le=1)
    feather: float = Field(default=7, ge=0, le=64)
    engine: Literal["mediapipe", "rembg"] = "mediapipe"
    rembg_model: str | None = Field(default=None, description="Only with engine rembg")
    shape: Literal["circle", "rect"] = "circle"
    circle_radius: float = Field(default=0.35, gt=0, le=1)
    circle_center_x: float = Field(default=0.5, ge=0, le=1)
    circle_center_y: float = Field(default=0.5, ge=0, le=1)


# ---- answers
class LegacyError(BaseModel):
    """Every error of these routes: the earlier API's `{error, message}` plus the status and our code; a job's
    failure adds its `jobId` and `status` (a 504 also the URLs to poll and cancel)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="The HTTP reason phrase, e.g. `Bad Request`")
    message: str
    code: int = Field(description="The HTTP status")
    error_code: str | None = Field(default=None, description="ReelForge's error code (the job's, when it failed)")
    jobId: str | None = None
    status: RunPodStatus | None = None
    statusUrl: str | None = None
    cancelUrl: str | None = None


class LegacyExecution(BaseModel):
    startTime: str | None
    endTime: str | None
    durationMs: int
    durationSeconds: float


class LegacyStats(BaseModel):
    model_config = ConfigDict(extra="allow")  # img2vid: total, processed

    jobId: str
    delayTime: int
    executionTime: int


class LegacyResult(BaseModel):
    """The 200 envelope: `video_url` (caption, addaudio), `videos` (img2vid), `transcription`/`files`/`model`
    (transcribe)."""

    model_config = ConfigDict(extra="allow")

    code: Literal[200]
    message: str
    execution: LegacyExecution
    stats: LegacyStats
    video_url: str | None = None
    videos: list[dict[str, Any]] | None = None
    transcription: dict[str, Any] | None = None
    files: dict[str, Any] | None = None


class JobAccepted(BaseModel):
    code: Literal[202]
    message: str
    jobId: str
    status: RunPodStatus
    statusUrl: str
    cancelUrl: str


class LegacyJobStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    status: RunPodStatus
    delayTime: int
    executionTime: int
    progress: float
    output: LegacyResult | None = Field(default=None, description="Once COMPLETED")
    error: str | None = Field(default=None, description="Once it failed")
    error_code: str | None = None


class LegacyCancelled(BaseModel):
    id: str
    status: RunPodStatus


class OverlayResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    overlay_url: str | None
    duration: float | None
    processing_time: float
    status: Literal["success"]
    job_id: str
    engine: str | None = None
    engine_mapping: str | None = None


class OverlayAccepted(BaseModel):
    job_id: str
    status: Literal["processing"]


class OverlayJobResult(BaseModel):
    status: Literal["processing", "completed", "failed"]
    result: OverlayResult | None = None
    error: str | None = None


# ---- what the route decorators declare
SUBMIT_ERRORS = (400, 401, 403, 404, 409, 422, 429, 500, 503, 504, 507)
READ_ERRORS = (401, 403, 404, 503)
# 413: the body limit; 422: a path or query parameter FastAPI cannot read (both in the service's own shape)


def answers(ok: dict[int, type[BaseModel]], *errors: int, service: tuple[int, ...] = (413,)
            ) -> dict[int | str, dict[str, Any]]:
    """`responses=`: the success bodies, the earlier API's errors, and the statuses the service's own layers
    answer in its ErrorResponse shape (413: the body limit; 422: a query parameter FastAPI cannot read)."""
    out: dict[int | str, dict[str, Any]] = {s: {"model": m, "description": _text(s)} for s, m in ok.items()}
    for status in errors:
        out[status] = {"model": LegacyError, "description": f"{_text(status)} (the earlier API's {{error, message}})"}
    for status in service:
        out[status] = {"model": ErrorResponse, "description": _text(status)}
    return out


# the routes authenticate inside (tenant_of: a 401 in the earlier API's shape): the key schemes, declared here
OWN_DOCS: dict[str, Any] = {OWN_ERRORS: True, "security": KEY_SECURITY, OWN_AUTH: "keys_required"}


def _text(status: int) -> str:
    return STATUS_TEXT.get(status) or HTTPStatus(status).phrase


def body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """`openapi_extra` for a body the route reads itself, documented as `model` (api/openapi.py adds the
    model to the document's components)."""
    return {**OWN_DOCS, "requestBody": json_body(model, description)}
