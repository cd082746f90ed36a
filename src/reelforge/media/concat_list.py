"""The ffmpeg concat demuxer: list files, the stream-copy join, and whether inputs may be joined by copy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reelforge.media.probe import MediaInfo


def concat_list_text(paths: Sequence[Path]) -> str:
    """A concat demuxer script. Paths are absolute and quoted (`'` written as `'\\''`)."""
    lines = ["ffconcat version 1.0"]
    for p in paths:
        quoted = str(Path(p).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def write_concat_list(paths: Sequence[Path], list_path: Path) -> Path:
    list_path.write_text(concat_list_text(paths), encoding="utf-8")
    return list_path


def concat_copy_args(list_path: Path, out: Path, *, audio: bool = True, duration_s: float | None = None,
                     extra_inputs: Sequence[str] = (), maps: Sequence[str] = (),
                     output_args: Sequence[str] = ()) -> list[str]:
    """Join the listed files by stream copy (`-c copy`), optionally cut at `duration_s`."""
    args = ["-f", "concat", "-safe", "0", "-i", str(list_path), *extra_inputs]
    if maps:
        for m in maps:
            args += ["-map", m]
    else:
        args += ["-map", "0:v:0"] + (["-map", "0:a:0?"] if audio else [])
    args += ["-c", "copy", *output_args]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    return [*args, "-movflags", "+faststart", str(out)]


def _video_key(info: MediaInfo) -> tuple[object, ...] | None:
    v = info.video
    if v is None:
        return None
    return (v.codec, v.width, v.height, v.pix_fmt, v.fps, v.profile)


def _audio_key(info: MediaInfo) -> tuple[object, ...] | None:
    a = info.audio
    return None if a is None else (a.codec, a.sample_rate, a.channels, a.profile)


def copy_compatible(infos: Sequence[MediaInfo]) -> bool:
    """True when every input has the same video (and audio) parameters, so a stream copy join is valid."""
    if not infos:
        return False
    first = infos[0]
    return all(_video_key(i) == _video_key(first) and _audio_key(i) == _audio_key(first) for i in infos[1:])
