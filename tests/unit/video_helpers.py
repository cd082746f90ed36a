"""Small readers for the video-operation tests: frames as numpy arrays, stream facts from ffprobe, and the
ffmpeg processes a test left running."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def streams(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"]


def duration(path: Path, stream: str = "v:0") -> float:
    """Duration of one stream from its packets' timestamps (not the container's rounded header)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                          "stream=duration", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout.strip()
    return float(out)


def frame_count(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout.strip()
    return int(out)


def luma(path: Path) -> np.ndarray:
    """The Y plane of every frame exactly as coded (n, h, w), without any range conversion."""
    info = next(s for s in streams(path) if s["codec_type"] == "video")
    w, h = int(info["width"]), int(info["height"])
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, w * h * 3 // 2)
    return arr[:, : w * h].reshape(-1, h, w)


def frames(path: Path, pix_fmt: str = "rgb24", at: float | None = None, count: int | None = None) -> np.ndarray:
    """Decoded frames as an array (n, h, w[, c]); `at` seeks (seconds), `count` limits."""
    info = next(s for s in streams(path) if s["codec_type"] == "video")
    w, h = int(info["width"]), int(info["height"])
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error"]
    if at is not None:
        args += ["-ss", f"{at:.3f}"]
    args += ["-i", str(path)]
    if count is not None:
        args += ["-frames:v", str(count)]
    args += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    raw = subprocess.run(args, capture_output=True, check=True).stdout
    channels = {"rgb24": 3, "gray": 1}[pix_fmt]
    arr = np.frombuffer(raw, dtype=np.uint8)
    n = arr.size // (w * h * channels)
    shape = (n, h, w) if channels == 1 else (n, h, w, channels)
    return arr[: n * w * h * channels].reshape(shape)


def audio_samples(path: Path, rate: int = 8000) -> np.ndarray:
    """Mono float samples of the first audio stream."""
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
                          "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this test process (read from /proc; no psutil needed)."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        state = stat[stat.rindex(")") + 2:].split()[0]
        if ppid == os.getpid() and comm == "ffmpeg" and state != "Z":
            found.append(int(entry.name))
    return found
