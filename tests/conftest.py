"""Shared fixtures: media is made with ffmpeg at test time; nothing large is checked in."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from reelforge.config import Settings
from reelforge.ops.context import OpContext


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=1)


@pytest.fixture
def ctx(tmp_path: Path, settings: Settings) -> OpContext:
    return OpContext.for_test(tmp_path / "work", settings)


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """make_video(duration=2, size="320x240", fps=25, audio=True, name="v.mp4") -> Path"""

    def make(duration: float = 2.0, size: str = "320x240", fps: int = 25, audio: bool = True,
             name: str = "v.mp4", source: str = "testsrc2") -> Path:
        out = tmp_path / name
        args = ["-f", "lavfi", "-i", f"{source}=size={size}:rate={fps}:duration={duration}"]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration}:sample_rate=48000"]
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        if audio:
            args += ["-c:a", "aac", "-shortest"]
        ffmpeg(*args, str(out))
        return out

    return make


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    def make(size: str = "640x480", name: str = "img.png", source: str = "testsrc2") -> Path:
        out = tmp_path / name
        ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:duration=1", "-frames:v", "1", str(out))
        return out

    return make


@pytest.fixture
def make_audio(tmp_path: Path) -> Callable[..., Path]:
    def make(duration: float = 2.0, name: str = "a.wav", freq: int = 440) -> Path:
        out = tmp_path / name
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:duration={duration}:sample_rate=48000", str(out))
        return out

    return make
