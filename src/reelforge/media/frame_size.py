"""Frame sizes: the one `FrameSize` type, the one `even()`, and the size/duration fields of the ops' params.

    FrameSize.parse("vertical_1080") == FrameSize(1080, 1920)      # presets, aspect ratios or "WxH"
    FrameSize(640, 360, channels=4).frame_bytes                     # raw rgba frames through a pipe
    size: FrameSizeText = "1080p"                                   # a params field, validated, kept as text
    even(641.3) == 642                                              # yuv420p needs even sides

Output sizes are always even (chroma is subsampled 2x2 in yuv420p).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

# the settings' default cap; operations re-check against the worker's Settings.max_video_pixels
MAX_FRAME_PIXELS = 4096 * 2304
MIN_SIDE = 16

SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "2160p": (3840, 2160), "4k": (3840, 2160), "1440p": (2560, 1440), "1080p": (1920, 1080),
    "720p": (1280, 720), "480p": (854, 480), "360p": (640, 360),
    "vertical_1080": (1080, 1920), "vertical_720": (720, 1280), "square_1080": (1080, 1080),
    "square_720": (720, 720), "portrait_1080": (1080, 1350),
    # aspect ratios alone mean a 1080-pixel short side
    "16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080), "4:5": (1080, 1350),
}
_WXH_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


def parse_frame_size(value: str) -> tuple[int, int]:
    """(width, height) for a preset name or "WxH". Raises ValueError with a user-facing sentence."""
    key = value.strip().lower()
    if key in SIZE_PRESETS:
        return SIZE_PRESETS[key]
    m = _WXH_RE.match(key)
    if not m:
        raise ValueError(f"size must be one of {', '.join(SIZE_PRESETS)} or WIDTHxHEIGHT, not {value!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ValueError(f"width and height must be at least {MIN_SIDE} pixels")
    if w % 2 or h % 2:
        raise ValueError("width and height must be even numbers (yuv420p video needs even sizes)")
    if w * h > MAX_FRAME_PIXELS:
        raise ValueError(f"{w}x{h} is larger than the {MAX_FRAME_PIXELS} pixel limit")
    return w, h


@dataclass(frozen=True)
class FrameSize:
    """A picture's width x height in pixels. `channels` matters only for raw frames in a pipe (rgb24 3, rgba 4)."""

    width: int
    height: int
    channels: int = 3

    @classmethod
    def parse(cls, value: str) -> FrameSize:
        return cls(*parse_frame_size(value))

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * self.channels

    @property
    def pix_fmt(self) -> str:
        return {3: "rgb24", 4: "rgba"}[self.channels]

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def _check_size(value: str) -> str:
    parse_frame_size(value)
    return value


def _check_duration(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("durations must be finite numbers greater than 0")
    return value


# a size as the params carry it: the text the user gave ("1080p", "1280x720"), checked by parse_frame_size
FrameSizeText = Annotated[str, AfterValidator(_check_size)]
# durations: > 0, finite; the worker's settings.limits.max_media_duration_s is checked by the operation
Duration = Annotated[float, AfterValidator(_check_duration)]


def even(n: float) -> int:
    """Nearest even integer >= 2 (the side of a yuv420p picture scaled by a factor)."""
    return max(2, round(n / 2.0) * 2)


def even_floor(n: float) -> int:
    """The even integer at or below `n` (a crop that must stay inside the picture)."""
    return math.floor(n) // 2 * 2


def even_ceil(n: float) -> int:
    """The even integer at or above `n` (a box that must cover `n`)."""
    return -(-math.ceil(n) // 2) * 2
