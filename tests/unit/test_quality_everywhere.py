"""`quality: "standard"` means the same encoder settings in every op: read from the ffmpeg commands the ops
really run (recorded on their way to the real subprocess, nothing stubbed), iterating over the ops."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.media.codecs import QUALITY_ARGS, VP9_CRF
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import ffmpeg

Media = dict[str, Path]


@pytest.fixture
def media(tmp_path: Path) -> Media:
    """Tiny inputs: two clips, an MJPEG clip (add_audio must re-encode it), a still, a tone."""
    m = {name: tmp_path / name for name in ("a.mp4", "b.mp4", "mjpeg.mkv", "still.png", "tone.wav")}
    for name, colour in (("a.mp4", "red"), ("b.mp4", "blue")):
        ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:s=96x64:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
               str(m[name]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=10:d=1", "-c:v", "mjpeg", str(m["mjpeg.mkv"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64", "-frames:v", "1", str(m["still.png"]))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1.2:sample_rate=48000", str(m["tone.wav"]))
    return m


def _clip(m: Media, name: str, length: float = 1.0) -> dict[str, Any]:
    return {"asset": {"type": "video", "src": str(m[name])}, "start": 0, "length": length}


# op name -> params at quality "standard" (the default, given explicitly)
X264_OPS: dict[str, Callable[[Media], dict[str, Any]]] = {
    "caption": lambda m: {"input": str(m["a.mp4"]), "subtitles_text": "1\n00:00:00,000 --> 00:00:01,000\nhi\n"},
    "concat": lambda m: {"inputs": [str(m["a.mp4"]), str(m["b.mp4"])], "size": "64x48"},
    "loop": lambda m: {"input": str(m["a.mp4"]), "duration_s": 1.5},
    "img2vid": lambda m: {"images": [str(m["still.png"])], "size": "64x48", "fps": 10, "duration_s": 0.5},
    "add_audio": lambda m: {"video": str(m["mjpeg.mkv"]), "audio": str(m["tone.wav"])},
    "overlay": lambda m: {"input": str(m["a.mp4"]), "output": "composite", "background": str(m["b.mp4"])},
    "render": lambda m: {"timeline": {"tracks": [{"clips": [_clip(m, "a.mp4")]}]},
                         "output": {"format": "mp4", "size": "64x48", "fps": 10}},
    "build": lambda m: {"audio": str(m["tone.wav"]), "backgrounds": [str(m["a.mp4"])], "captions": "none",
                        "size": "64x48", "fps": 10, "cache": False},
}
VP9_OPS: dict[str, Callable[[Media], dict[str, Any]]] = {
    "overlay": lambda m: {"input": str(m["a.mp4"]), "output": "webm"},
    "render": lambda m: {"timeline": {"tracks": [{"clips": [_clip(m, "a.mp4")]}]},
                         "output": {"format": "webm", "size": "64x48", "fps": 10}},
}


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command line started while the test runs; each still runs for real."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            if isinstance(args, list | tuple):
                seen.append([str(x) for x in args])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return seen


def _last(cmd: list[str], flag: str) -> str | None:
    return cmd[len(cmd) - 1 - cmd[::-1].index(flag) + 1] if flag in cmd else None


def crfs_by_op(ops: dict[str, Callable[[Media], dict[str, Any]]], encoder: str, media: Media,
               commands: list[list[str]], tmp_path: Path) -> dict[str, set[str]]:
    """op -> the -crf values of the `encoder` encodes that op ran at quality "standard"."""
    settings = Settings(data_dir=tmp_path / "data", workers=1, nvenc="off")  # the CPU encoders' table
    found: dict[str, set[str]] = {}
    for name, body in ops.items():
        op = get_operation(name)
        commands.clear()
        op.run(op.params_model.model_validate({**body(media), **_quality(name)}),
               OpContext.for_test(tmp_path / f"work-{name}", settings))
        found[name] = {crf for cmd in commands if _last(cmd, "-c:v") == encoder
                       and (crf := _last(cmd, "-crf")) is not None}
    return found


def _quality(op: str) -> dict[str, Any]:
    return {} if op == "render" else {"quality": "standard"}  # render's quality is output.quality


def test_standard_is_one_x264_crf_in_every_op(media: Media, commands: list[list[str]], tmp_path: Path) -> None:
    found = crfs_by_op(X264_OPS, "libx264", media, commands, tmp_path)
    expected = QUALITY_ARGS["libx264"]["standard"][-1]
    assert found == {name: {expected} for name in X264_OPS}


def test_standard_is_one_vp9_crf_in_every_op(media: Media, commands: list[list[str]], tmp_path: Path) -> None:
    found = crfs_by_op(VP9_OPS, "libvpx-vp9", media, commands, tmp_path)
    assert found == {name: {str(VP9_CRF["standard"])} for name in VP9_OPS}
