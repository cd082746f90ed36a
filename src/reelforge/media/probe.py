"""Probe media once into frozen dataclasses; code downstream takes MediaInfo, not a path."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from reelforge.errors import MediaError
from reelforge.media.ffmpeg import ffprobe_bin, redact_paths
from reelforge.media.inputs import (
    demuxer_of,
    format_not_allowed,
    probe_args,
    remember_demuxer,
    still_image_demuxer,
)

# Codecs ffprobe reports for still images (so an image is not mistaken for a video)
IMAGE_CODECS = {"mjpeg", "png", "webp", "bmp", "tiff", "gif", "jpeg2000", "jpegls", "pam", "ppm", "pgm",
                "pgmyuv", "qoi"}


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # video | audio | subtitle | data
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    bit_rate: int | None = None
    frames: int | None = None
    profile: str | None = None
    alpha: bool = False
    b_frames: int | None = None  # has_b_frames: > 0 when decode order differs from display order


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration_s: float
    size_bytes: int
    bit_rate: int | None
    streams: tuple[StreamInfo, ...] = field(default_factory=tuple)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def demuxer(self) -> str:
        """The demuxer later commands force for this file (probe() admits only allowed ones)."""
        return self.format_name.split(",")[0]

    @property
    def is_image(self) -> bool:
        v = self.video
        return v is not None and self.audio is None and (
            v.codec in IMAGE_CODECS and (self.format_name.endswith("_pipe") or self.format_name
                                         in ("image2", "png_pipe", "webp_pipe", "gif"))
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


def _fps(rate: str | None) -> float | None:
    if not rate or rate in ("0/0", "0"):
        return None
    try:
        value = float(Fraction(rate))
    except (ValueError, ZeroDivisionError):
        return None
    return round(value, 3) if value > 0 else None


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and f >= 0 else None  # drop NaN / negative


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


_ALPHA_PIX_PREFIXES = ("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya")


def _has_alpha(pix_fmt: str | None, tags: dict[str, Any]) -> bool:
    # VP9 alpha is a side stream: ffprobe reports yuv420p plus the ALPHA_MODE tag
    return bool(pix_fmt and pix_fmt.startswith(_ALPHA_PIX_PREFIXES)) or "1" in (
        tags.get("alpha_mode"), tags.get("ALPHA_MODE"))


_NOT_ON_WHITELIST = re.compile(r"\[(\w+) @ [^\]]*\] Format not on whitelist")


def input_label(name: str | None) -> str:
    """How messages name an input: by the reference the user gave, never by a local path."""
    return f"The input {name!r}" if name else "The input"


def probe(path: Path | str, *, timeout_s: float = 60.0, name: str | None = None) -> MediaInfo:
    """ffprobe a local file as one allowed single-file container (media/inputs.py).

    Raises MediaError: `input_format_not_allowed` for playlists, concat lists, image patterns and other
    formats that are not on the allowlist, `not_media` when it is not readable media. Messages name the
    input as `name` (the reference the user gave), never by its local path.
    """
    path = Path(path)
    label = input_label(name)

    def run(demuxer: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [ffprobe_bin(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
               *probe_args(path, demuxer)]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, errors="replace")
        except subprocess.TimeoutExpired as exc:
            raise MediaError(f"Probing {label[0].lower()}{label[1:]} took too long; it may be corrupt.",
                             code="probe_timeout") from exc

    res = run()
    if res.returncode != 0:
        stderr = res.stderr.strip()
        refused = _NOT_ON_WHITELIST.search(stderr)
        still = still_image_demuxer(path) if refused and refused.group(1) == "image2" else None
        if still is not None:  # one still image claimed by image2: read it with its own one-file demuxer
            res = run(still)
            stderr = res.stderr.strip()
            refused = _NOT_ON_WHITELIST.search(stderr)
        if refused:
            raise format_not_allowed(refused.group(1), label)
    if res.returncode != 0:
        names = {str(path.absolute()): name or path.name, str(path): name or path.name}
        reason = redact_paths(stderr.splitlines()[-1], names) if stderr else "unreadable"
        raise MediaError(f"{label} is not a readable media file ({reason}).", code="not_media")
    data = json.loads(res.stdout or "{}")
    fmt = data.get("format") or {}
    streams: list[StreamInfo] = []
    for s in data.get("streams") or []:
        kind = s.get("codec_type") or "data"
        tags = s.get("tags") or {}
        pix = s.get("pix_fmt")
        streams.append(StreamInfo(
            index=int(s.get("index", len(streams))),
            kind=kind,
            codec=s.get("codec_name") or "unknown",
            width=_int(s.get("width")),
            height=_int(s.get("height")),
            fps=_fps(s.get("avg_frame_rate")) or _fps(s.get("r_frame_rate")) if kind == "video" else None,
            pix_fmt=pix,
            sample_rate=_int(s.get("sample_rate")),
            channels=_int(s.get("channels")),
            duration_s=_float(s.get("duration")),
            bit_rate=_int(s.get("bit_rate")),
            frames=_int(s.get("nb_frames")),
            profile=s.get("profile"),
            alpha=_has_alpha(pix, tags),
            b_frames=_int(s.get("has_b_frames")) if kind == "video" else None,
        ))
    if not streams:
        raise MediaError("The input has no audio or video streams.", code="no_streams")
    format_name = fmt.get("format_name") or "unknown"
    remember_demuxer(path, demuxer_of(format_name, label))
    duration = _float(fmt.get("duration"))
    if duration is None:
        duration = max((s.duration_s or 0.0) for s in streams)
    return MediaInfo(
        path=str(path),
        format_name=format_name,
        duration_s=duration or 0.0,
        size_bytes=_int(fmt.get("size")) or path.stat().st_size,
        bit_rate=_int(fmt.get("bit_rate")),
        streams=tuple(streams),
    )


def require_video(info: MediaInfo) -> StreamInfo:
    if info.video is None or info.is_image:
        raise MediaError("The input has no video stream.", code="no_video_stream")
    return info.video


def require_audio(info: MediaInfo) -> StreamInfo:
    if info.audio is None:
        raise MediaError("The input has no audio stream.", code="no_audio_stream")
    return info.audio
