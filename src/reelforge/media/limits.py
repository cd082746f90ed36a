"""Checks of untrusted media against the worker's limits, done before any heavy work starts.

`probe_input` is how an operation opens a user's input: the restricted probe (media/probe.py, only
allowlisted single-file formats) and then the caps below — frame size (images against max_image_pixels,
video against max_video_pixels), frame rate, duration and stream count. The `probe` operation reports the
same checks without refusing (it reads metadata only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reelforge.config import Settings
from reelforge.errors import InvalidParams, MediaError
from reelforge.media.probe import MediaInfo, input_label, probe

InputKind = Literal["video", "audio", "image", "visual", "any"]


def check_duration_limit(seconds: float, settings: Settings, what: str = "The requested duration") -> None:
    if seconds > settings.limits.max_media_duration_s:
        raise InvalidParams(
            f"{what} ({seconds:.1f} s) is longer than this service's limit of "
            f"{settings.limits.max_media_duration_s:.0f} s.", code="duration_too_long")


def check_frame_pixels(width: int, height: int, settings: Settings) -> None:
    if width * height > settings.limits.max_video_pixels:
        raise InvalidParams(f"The output size {width}x{height} is larger than this service's limit of "
                            f"{settings.limits.max_video_pixels} pixels.", code="size_too_large")


def input_limit_problems(info: MediaInfo, settings: Settings, name: str | None = None) -> list[MediaError]:
    """Every cap `info` exceeds, as the errors an operation would raise (empty: within limits)."""
    label = input_label(name)
    problems: list[MediaError] = []
    v = info.video
    if len(info.streams) > settings.limits.max_input_streams:
        problems.append(MediaError(f"{label} has {len(info.streams)} streams; the limit is "
                                   f"{settings.limits.max_input_streams}.", code="too_many_streams"))
    if v is not None and v.width and v.height:
        pixels = v.width * v.height
        if info.is_image:
            if pixels > settings.limits.max_image_pixels:
                problems.append(MediaError(
                    f"{label} is a {v.width}x{v.height} image ({pixels} pixels), larger than this service's "
                    f"limit of {settings.limits.max_image_pixels} pixels.", code="image_too_large"))
        elif pixels > settings.limits.max_video_pixels:
            problems.append(MediaError(
                f"{label} is a {v.width}x{v.height} video ({pixels} pixels a frame), larger than this "
                f"service's limit of {settings.limits.max_video_pixels} pixels.", code="video_too_large"))
    if v is not None and not info.is_image and v.fps and v.fps > settings.limits.max_video_fps:
        problems.append(MediaError(f"{label} runs at {v.fps:g} frames per second; the limit is "
                                   f"{settings.limits.max_video_fps:g}.", code="frame_rate_too_high"))
    if info.duration_s > settings.limits.max_media_duration_s:
        problems.append(MediaError(f"{label} is {info.duration_s:.1f} s long; the limit is "
                                   f"{settings.limits.max_media_duration_s:.0f} s.", code="media_too_long"))
    return problems


def check_input_limits(info: MediaInfo, settings: Settings, name: str | None = None) -> MediaInfo:
    problems = input_limit_problems(info, settings, name)
    if problems:
        raise problems[0]
    return info


def probe_input(path: Path, settings: Settings, name: str | None = None, kind: InputKind = "any") -> MediaInfo:
    """Probe a user's input (allowlisted formats only) and refuse it when it exceeds a cap or is not `kind`:
    video (a moving picture), audio, image (a still), visual (either) or any."""
    info = check_input_limits(probe(path, name=name), settings, name)
    label = input_label(name)
    v = info.video
    if kind == "video" and (v is None or info.is_image):
        raise MediaError(f"{label} has no video stream.", code="no_video_stream")
    if kind == "audio" and info.audio is None:
        raise MediaError(f"{label} has no audio stream.", code="no_audio_stream")
    if kind in ("image", "visual") and (v is None or not v.width or not v.height):
        raise MediaError(f"{label} is not an image.", code="not_an_image")
    if kind == "image" and v is not None and v.width and v.height:  # a still held in a video container too
        pixels = v.width * v.height
        if pixels > settings.limits.max_image_pixels:
            raise MediaError(f"{label} is {v.width}x{v.height} ({pixels} pixels), larger than this service's "
                             f"limit of {settings.limits.max_image_pixels} pixels.", code="image_too_large")
    return info


def probe_image(path: Path, settings: Settings, name: str | None = None) -> MediaInfo:
    """Probe an image and refuse decompression bombs by header dimensions, before anything decodes it."""
    return probe_input(path, settings, name, kind="image")
