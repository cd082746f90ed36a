"""Write subtitle files through pysubs2, atomically (temporary name, then rename)."""

from __future__ import annotations

from pathlib import Path

import pysubs2

FORMATS = {".ass": "ass", ".srt": "srt", ".vtt": "vtt"}


def save_subs(subs: pysubs2.SSAFile, path: Path) -> Path:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported subtitle extension {path.suffix!r}")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    subs.save(str(tmp), encoding="utf-8", format_=fmt)
    tmp.replace(path)
    return path


def write_ass(subs: pysubs2.SSAFile, path: Path) -> Path:
    return save_subs(subs, path.with_suffix(".ass"))


def write_srt(subs: pysubs2.SSAFile, path: Path) -> Path:
    return save_subs(subs, path.with_suffix(".srt"))


def write_vtt(subs: pysubs2.SSAFile, path: Path) -> Path:
    return save_subs(subs, path.with_suffix(".vtt"))


def load_subs(path: Path) -> pysubs2.SSAFile:
    """Read SRT/VTT/ASS; raises ValueError for anything pysubs2 cannot parse."""
    try:
        return pysubs2.load(str(path), encoding="utf-8")
    except (pysubs2.exceptions.Pysubs2Error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a readable subtitle file: {exc}") from exc
