"""The users' earlier API (seed 004): its request bodies -> native submissions, and job facts -> its answers.

Pure functions, no I/O: the HTTP front door (api/legacy_seed004.py) parses a body, calls one of the
`*_jobs` translators, submits each `Submission` through JobService, waits (api/legacy_common.py), and
answers with `envelope` / `status_body` built from the finished jobs.

    POST /video/caption    {url_video, url_srt, path, output_filename}   -> caption     (video_url)
    POST /video/img2vid    {images: [{id, image_url, duracao}], path}    -> one img2vid job per image
                                                                            (videos[]: video_1.mp4 ...)
    POST /video/addaudio   {url_video, url_audio, path, output_filename} -> add_audio, fit shortest
    POST /transcribe       {audio_url, path, model?, language?}          -> transcribe (segments.srt,
                                                                            karaoke.ass, words.json)

Where outputs land is `output_paths` (the client's `path` + file name), placed under the tenant's delivery
root by JobService. The images of one img2vid call are separate jobs sharing a group id
`i2v_<hex>_<count>`; each is found again through its idempotency key `seed004:<group>:<n>`. Missing fields
are a UserError (400) with the earlier API's own sentences.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from reelforge.engine.control import JobStatus
from reelforge.errors import UserError

FRONTDOOR = "seed004"
GROUP_RE = re.compile(r"^i2v_[0-9a-f]{20}_([1-9][0-9]{0,2})$")
MAX_IMAGES = 200
# the earlier worker: 1920x1080 at 24 fps, zoom 1.0 -> 1.324 over the clip
IMG2VID = {"size": "1920x1080", "fps": 24, "effect": "zoom_in", "zoom": 0.324, "easing": "linear", "join": False}
TRANSCRIBE_FILES = {"segments_srt": "segments.srt", "captions": "karaoke.ass", "words": "words.json"}
MESSAGES = {
    "caption": "Video caption completed and uploaded to S3 successfully",
    "img2vid": "Images converted to videos and uploaded to S3 successfully",
    "addaudio": "Video addaudio completed and uploaded to S3 successfully",
    "transcribe": "Transcription completed and uploaded to S3 successfully",
}
RUNPOD_STATUS = {JobStatus.QUEUED: "IN_QUEUE", JobStatus.RUNNING: "IN_PROGRESS",
                 JobStatus.SUCCEEDED: "COMPLETED", JobStatus.FAILED: "FAILED",
                 JobStatus.CANCELLED: "CANCELLED", JobStatus.TIMED_OUT: "TIMED_OUT"}


@dataclass(frozen=True)
class Submission:
    """One native job to submit (the front door turns it into a JobCreate)."""

    op: str
    params: dict[str, Any]
    output_paths: dict[str, str]
    notes: dict[str, Any]
    idempotency_key: str | None = None


class JobFacts(Protocol):
    """What the answers read from a job (jobs' JobRecord has these)."""

    @property
    def status(self) -> JobStatus: ...

    @property
    def created_at(self) -> float: ...

    @property
    def started_at(self) -> float | None: ...

    @property
    def finished_at(self) -> float | None: ...

    @property
    def progress(self) -> float: ...

    @property
    def notes(self) -> dict[str, Any]: ...

    @property
    def result(self) -> dict[str, Any] | None: ...

    @property
    def error(self) -> dict[str, Any] | None: ...


UrlOf = Callable[[Any, str], "str | None"]  # (job, output name) -> download URL, None when there is none


def missing(message: str) -> UserError:
    return UserError(message, code="missing_fields")


# ---------------------------------------------------------------- request bodies -> submissions
def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _require(body: dict[str, Any], names: tuple[str, ...], message: str) -> list[str]:
    values = [_text(body, n) for n in names]
    if any(v is None for v in values):
        raise missing(message)
    return [v for v in values if v is not None]


def _folder(path: str) -> str:
    folder = path.strip().rstrip("/")
    return folder + "/" if folder else ""


def _notes(kind: str, **extra: Any) -> dict[str, Any]:
    return {"frontdoor": FRONTDOOR, FRONTDOOR: {"kind": kind, **extra}}


def caption_jobs(body: dict[str, Any]) -> list[Submission]:
    video, srt, path, name = _require(body, ("url_video", "url_srt", "path", "output_filename"),
                                      "url_video, url_srt, path, and output_filename are required")
    return [Submission("caption", {"input": video, "subtitles": srt, "format": "srt"},
                       {"video": _folder(path) + name}, _notes("caption"))]


def addaudio_jobs(body: dict[str, Any]) -> list[Submission]:
    video, audio, path, name = _require(body, ("url_video", "url_audio", "path", "output_filename"),
                                        "url_video, url_audio, path, and output_filename are required")
    return [Submission("add_audio", {"video": video, "audio": audio, "mode": "replace", "fit": "shortest"},
                       {"video": _folder(path) + name}, _notes("addaudio"))]


def transcribe_jobs(body: dict[str, Any], offered: Collection[str] = ()) -> list[Submission]:
    """`offered`: the whisper model names a job may pick here; another `model` (the earlier API took any of
    tiny .. large-v3, turbo) runs the service's default model, and the job's notes say so."""
    audio = _text(body, "audio_url") or _text(body, "url_audio")
    path = _text(body, "path")
    if audio is None or path is None:
        raise missing("audio_url and path are required")
    params: dict[str, Any] = {"input": audio}
    language = body.get("language")
    if language is not None:
        if not isinstance(language, str):
            raise UserError("language must be a string such as 'en' or 'auto'")
        params["language"] = language
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or len(model) > 64):
        raise UserError("model must be a model name such as 'base' or 'large-v3'")
    extra: dict[str, Any] = {}
    if model:
        extra["model_requested"] = model
        if model.strip() in offered:
            params["model"] = model.strip()
        else:
            extra["model_note"] = (f"whisper model {model!r} is not offered here; the service's default ran "
                                   "(notes.whisper_model)")
    folder = _folder(path)
    return [Submission("transcribe", params, {name: folder + f for name, f in TRANSCRIBE_FILES.items()},
                       _notes("transcribe", **extra))]


def img2vid_jobs(body: dict[str, Any], group: str) -> list[Submission]:
    images = body.get("images")
    if not isinstance(images, list) or not images:
        raise missing("images array is required with at least one image")
    path = _text(body, "path")
    if path is None:
        raise missing("path is required")
    if len(images) > MAX_IMAGES:
        raise UserError(f"images may hold at most {MAX_IMAGES} images")
    folder = _folder(path)
    jobs = []
    for n, image in enumerate(images, start=1):
        if not isinstance(image, dict) or _text(image, "image_url") is None or image.get("id") in (None, ""):
            raise missing(f"images[{n - 1}] needs id, image_url and duracao")
        duration = image.get("duracao")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            raise missing(f"images[{n - 1}].duracao must be a number of seconds above 0")
        filename = f"video_{n}.mp4"
        jobs.append(Submission(
            "img2vid", {**IMG2VID, "images": [{"image": _text(image, "image_url"), "duration_s": duration}]},
            {"clip_001": folder + filename},
            _notes("img2vid", group=group, index=n, id=str(image["id"]), filename=filename),
            idempotency_key=member_key(group, n)))
    return jobs


def group_id(hex20: str, count: int) -> str:
    return f"i2v_{hex20}_{count}"


def member_key(group: str, n: int) -> str:
    return f"{FRONTDOOR}:{group}:{n}"


def group_size(job_id: str) -> int | None:
    """How many image jobs an img2vid group id names; None for a plain job id."""
    m = GROUP_RE.match(job_id)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- job facts -> the earlier answers
def overall_status(jobs: Sequence[JobFacts]) -> JobStatus:
    """One status for a group of jobs: while any runs, running (queued when none has started); once all have
    ended, the first failure in the order failed, timed out, cancelled; else succeeded."""
    statuses = {j.status for j in jobs}
    if not all(s.terminal for s in statuses):
        return JobStatus.QUEUED if statuses == {JobStatus.QUEUED} else JobStatus.RUNNING
    for s in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED):
        if s in statuses:
            return s
    return JobStatus.SUCCEEDED


def iso_ms(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def timing(jobs: Sequence[JobFacts]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(execution, stats-timing) in the earlier API's terms: wall time from the first start to the last end,
    delayTime = queue wait before the first start, executionTime = that wall time (milliseconds)."""
    created = min(j.created_at for j in jobs)
    starts = [j.started_at for j in jobs if j.started_at is not None]
    ends = [j.finished_at for j in jobs if j.finished_at is not None]
    start = min(starts) if starts else created
    end = max(ends) if ends else time.time()
    ms = max(0, round((end - start) * 1000))
    execution = {"startTime": iso_ms(start), "endTime": iso_ms(end), "durationMs": ms,
                 "durationSeconds": round(ms / 1000, 3)}
    return execution, {"delayTime": max(0, round((start - created) * 1000)), "executionTime": ms}


def _meta(job: JobFacts) -> dict[str, Any]:
    value = job.notes.get(FRONTDOOR)
    return value if isinstance(value, dict) else {}


def envelope(job_id: str, jobs: Sequence[JobFacts], url: UrlOf) -> dict[str, Any]:
    """The earlier API's 200 body for the finished jobs of one call."""
    first = jobs[0]
    kind = _meta(first).get("kind")
    execution, times = timing(jobs)
    stats: dict[str, Any] = {"jobId": job_id, **times}
    body: dict[str, Any] = {"code": 200, "message": MESSAGES.get(str(kind), "Job completed successfully")}
    if kind == "img2vid":
        body["videos"] = [{"id": _meta(j).get("id"), "video_url": url(j, "clip_001"),
                           "filename": _meta(j).get("filename")} for j in jobs]
        stats |= {"total": len(jobs), "processed": sum(j.status == JobStatus.SUCCEEDED for j in jobs)}
    elif kind == "transcribe":
        data = (first.result or {}).get("data") or {}
        body["transcription"] = {"text": data.get("text"), "language": data.get("language"),
                                 "duration": data.get("duration_s"), "segments": data.get("segments"),
                                 "words": data.get("words")}
        body["files"] = {"segments": {"srt": url(first, "segments_srt")}, "karaoke": {"ass": url(first, "captions")},
                         "words": {"json": url(first, "words")}}
        body["model"] = {"requested": _meta(first).get("model_requested"), "used": first.notes.get("whisper_model"),
                         "note": _meta(first).get("model_note")}
    elif kind in ("caption", "addaudio"):
        body["video_url"] = url(first, "video")
    else:  # a job submitted some other way: every output's URL
        body["outputs"] = {name: url(first, name) for name in ((first.result or {}).get("outputs") or {})}
    return {**body, "execution": execution, "stats": stats}


def status_body(job_id: str, jobs: Sequence[JobFacts], url: UrlOf) -> dict[str, Any]:
    """GET /job/{id}, RunPod-style: status, times, progress; `output` (the envelope) once COMPLETED."""
    status = overall_status(jobs)
    _, times = timing(jobs)
    body: dict[str, Any] = {"id": job_id, "status": RUNPOD_STATUS[status], **times,
                            "progress": round(sum(j.progress for j in jobs) / len(jobs), 4)}
    if status == JobStatus.SUCCEEDED:
        body["output"] = envelope(job_id, jobs, url)
    elif status.terminal:
        bad = next(j for j in jobs if j.status == status)
        body["error"] = (bad.error or {}).get("message") or status.value
        body["error_code"] = (bad.error or {}).get("code")
    return body
