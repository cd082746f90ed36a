"""Checks of untrusted media against the worker's limits, done before any heavy work starts."""

from __future__ import annotations

from pathlib import Path

from reelforge.config import Settings
from reelforge.errors import InvalidParams, MediaError
from reelforge.media.probe import MediaInfo, probe


def check_duration_limit(seconds: float, settings: Settings, what: str = "The requested duration") -> None:
    if seconds > settings.max_media_duration_s:
        raise InvalidParams(
            f"{what} ({seconds:.1f} s) is longer than this service's limit of "
            f"{settings.max_media_duration_s:.0f} s.", code="duration_too_long")


def check_frame_pixels(width: int, height: int, settings: Settings) -> None:
    if width * height > settings.max_video_pixels:
        raise InvalidParams(f"The output size {width}x{height} is larger than this service's limit of "
                            f"{settings.max_video_pixels} pixels.", code="size_too_large")


def probe_image(path: Path, settings: Settings) -> MediaInfo:
    """Probe an image and refuse decompression bombs by header dimensions, before anything decodes it."""
    info = probe(path)
    video = info.video
    if video is None or not video.width or not video.height:
        raise MediaError("The input is not an image.", code="not_an_image")
    pixels = video.width * video.height
    if pixels > settings.max_image_pixels:
        raise MediaError(f"The image is {video.width}x{video.height} ({pixels} pixels), larger than this "
                         f"service's limit of {settings.max_image_pixels} pixels.", code="image_too_large")
    return info
