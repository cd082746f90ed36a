"""The ffmpeg concat demuxer: list files, the stream-copy join, and whether inputs may be joined by copy.

Only the project writes concat lists, and ffmpeg reads them in safe mode (`-safe 1`, media/inputs.concat_input):
every entry is a plain name in the list's own folder (letters, digits, `.`, `_`, `-`; no leading dot, no
path), so a list can name nothing but the files it was written for. A file kept elsewhere, or with another
name, is linked into the folder under a plain name first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from reelforge.media.inputs import concat_input
from reelforge.media.probe import MediaInfo

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def concat_list_text(names: Sequence[str]) -> str:
    """A concat demuxer script of plain file names (what `-safe 1` accepts)."""
    for name in names:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"not a plain file name for a safe concat list: {name!r}")
    return "\n".join(["ffconcat version 1.0", *(f"file '{name}'" for name in names)]) + "\n"


def _plain_name_for(path: Path, folder: Path, stand_in: str) -> str:
    path = Path(path)
    if path.parent.resolve() == folder.resolve() and _SAFE_NAME.match(path.name):
        return path.name
    suffix = path.suffix if _SAFE_NAME.match(path.suffix.lstrip(".") or "x") else ""
    link = folder / f"{stand_in}{suffix}"
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)  # same file system (the job's work folder): no copy
    except OSError:
        link.symlink_to(path.resolve())
    return link.name


def write_concat_list(paths: Sequence[Path], list_path: Path) -> Path:
    folder = list_path.parent
    names = [_plain_name_for(p, folder, f"{list_path.stem}-{k:04d}") for k, p in enumerate(paths)]
    list_path.write_text(concat_list_text(names), encoding="utf-8")
    return list_path


def concat_copy_args(list_path: Path, out: Path, *, audio: bool = True, duration_s: float | None = None,
                     extra_inputs: Sequence[str] = (), maps: Sequence[str] = (),
                     output_args: Sequence[str] = (), formats: Iterable[str] = ("mov",)) -> list[str]:
    """Join the listed files by stream copy (`-c copy`), optionally cut at `duration_s`. `formats` are the
    listed files' demuxers (the project's own pieces are MP4: mov)."""
    args = [*concat_input(list_path, formats), *extra_inputs]
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
