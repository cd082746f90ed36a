"""The last check before a job succeeds: every output is what it claims to be.

ffmpeg can exit 0 and leave a 262-byte MP4 with no streams (a render clip of 1e-9 s, a caption over a y4m
whose only frame is cut short). The job host (engine/host.py) calls `verify_outputs` on every result before
reporting it done, so no job succeeds with an empty, streamless or far-too-short output:

- video files (.mp4 .mov .webm .mkv) probe as media with a video stream and a duration above zero;
- audio files (.m4a .mp3 .wav .opus .ogg .flac) with an audio stream and a duration above zero;
- other files (json, subtitles, text) exist (a transcript of silence may rightly be empty);
- when the op says its result has sound (`data["audio"] is True`), the main output has an audio stream;
- when the op reports the length it made (`data["duration_s"]`, a number), each video/audio output named
  `video`/`audio`/`overlay`/`render` lasts about that long (within 1 s or 10 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelforge.errors import MediaError, ProcessingError
from reelforge.media.probe import probe

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv"})
AUDIO_SUFFIXES = frozenset({".m4a", ".mp3", ".wav", ".opus", ".ogg", ".flac", ".aac"})
_MAIN_OUTPUTS = ("video", "audio", "overlay", "render")


def _invalid(name: str, why: str) -> ProcessingError:
    return ProcessingError(f"The output {name!r} {why}; nothing usable was made (check the lengths and "
                           "inputs given).", code="output_invalid")


def verify_output(name: str, path: Path, expected_s: float | None = None, *, with_audio: bool = False) -> None:
    if not path.is_file():
        raise _invalid(name, "was not written")
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES | AUDIO_SUFFIXES:
        return  # text (a transcript of silence may rightly be empty)
    if path.stat().st_size == 0:
        raise _invalid(name, "is empty")
    try:
        info = probe(path, name=name)
    except MediaError as exc:
        raise _invalid(name, "has no audio or video streams" if exc.code == "no_streams"
                       else "is not readable media") from exc
    kind = "video" if suffix in VIDEO_SUFFIXES else "audio"
    stream = info.video if kind == "video" else info.audio
    if stream is None:
        raise _invalid(name, f"has no {kind} stream")
    if info.duration_s <= 0 or stream.frames == 0:
        raise _invalid(name, "has no duration")
    if with_audio and info.audio is None:
        raise _invalid(name, "has no audio stream")
    if expected_s is not None and expected_s > 0 and abs(info.duration_s - expected_s) > max(1.0, 0.1 * expected_s):
        raise _invalid(name, f"lasts {info.duration_s:.2f} s where {expected_s:.2f} s were made")


def verify_outputs(outputs: Mapping[str, Path | str], data: Mapping[str, Any] | None = None) -> None:
    """Raise ProcessingError(code="output_invalid") unless every output passes the checks above."""
    reported = (data or {}).get("duration_s")
    expected = float(reported) if isinstance(reported, int | float) and not isinstance(reported, bool) else None
    promised_audio = (data or {}).get("audio") is True  # e.g. render: the timeline has sound
    for name, path in outputs.items():
        main = name in _MAIN_OUTPUTS
        verify_output(name, Path(path), expected if main else None, with_audio=main and promised_audio)
