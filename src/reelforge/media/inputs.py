"""How ffmpeg and ffprobe may open an input: one ordinary single-file container, never anything it points to.

ffmpeg detects a format from content, and some formats are not media but lists of other files: an HLS or
DASH playlist, an ffconcat script, an image2 file-name pattern (`%d`, globs), a `subfile,`/`concat:`/`data:`
URL. Uploaded under any name (`.mp4` included) such an input makes ffmpeg read whatever local file it
names. So:

- media/probe.probe opens a file with `-protocol_whitelist file -format_whitelist <ALLOWED_DEMUXERS>`
  (`probe_args`): a playlist, concat list or pattern is refused there with `input_format_not_allowed`, and
  the demuxer found is remembered for that file (path, size, mtime);
- every ffmpeg command goes through `guard_inputs` (media/ffmpeg.run_ffmpeg and open_ffmpeg_pipe): each
  `-i <file>` gets the demuxer forced to the probed one (`-f mov`, `-f png_pipe`, ...) with the whitelists
  narrowed to it, all built by `input_args`, the one function that opens a file; a file never probed
  (an intermediate of the project's own) still gets both whitelists with the allowlist; a pipe gets
  `pipe`, a generated input (`-f lavfi`) only its own format.

None of the allowed demuxers opens other files (mov's external data references stay off, ffmpeg's default).
The project's own concat lists (media/concat_list.py) are the one list format read, through
`concat_input`: `-safe 1` and only the listed files' demuxers.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from reelforge.errors import MediaError

# Demuxer names as ffmpeg registers them (`ffmpeg -demuxers`); a probed format_name lists aliases
# ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"), the first one is the demuxer's name.
VIDEO_DEMUXERS = frozenset({"mov", "matroska", "avi", "mpegts", "flv", "ogg", "yuv4mpegpipe"})
AUDIO_DEMUXERS = frozenset({"wav", "mp3", "aac", "flac", "ogg", "aiff", "w64"})
# single images: the *_pipe demuxers read exactly one file; image2 (patterns, sequences) is not allowed
IMAGE_DEMUXERS = frozenset({"png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif"})
# subtitle tracks (the project writes them itself from parsed text, see ops/mux_subtitles)
SUBTITLE_DEMUXERS = frozenset({"srt", "ass", "webvtt"})
ALLOWED_DEMUXERS = VIDEO_DEMUXERS | AUDIO_DEMUXERS | IMAGE_DEMUXERS | SUBTITLE_DEMUXERS
ALLOWED_WHITELIST = ",".join(sorted(ALLOWED_DEMUXERS))

_WHITELIST_FLAGS = ("-protocol_whitelist", "-format_whitelist")
_PROBED_MAX = 4096
_probed: OrderedDict[str, tuple[int, int, str]] = OrderedDict()  # abs path -> (size, mtime_ns, demuxer)
_probed_lock = threading.Lock()


def format_not_allowed(fmt: str, label: str = "The input") -> MediaError:
    what = {"hls": "an HLS playlist", "dash": "a DASH manifest", "concat": "an ffconcat list",
            "image2": "an image sequence or file-name pattern"}.get(fmt, f"in the {fmt!r} format")
    return MediaError(
        f"{label} is {what}, which is not accepted: give one ordinary media file (video, audio or image) "
        "that does not refer to other files.", code="input_format_not_allowed")


def demuxer_of(format_name: str, label: str = "The input") -> str:
    """The demuxer to force for a probed `format_name`, or MediaError(input_format_not_allowed)."""
    first = format_name.split(",")[0] or "unknown"
    if first not in ALLOWED_DEMUXERS:
        raise format_not_allowed(first, label)
    return first


# image2 claims single stills by their extension (ffmpeg's own JPEGs included) but also expands patterns;
# a still is read by its content's one-file demuxer instead, chosen by its magic bytes
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "jpeg_pipe"), (b"\x89PNG\r\n\x1a\n", "png_pipe"), (b"BM", "bmp_pipe"),
                (b"II*\x00", "tiff_pipe"), (b"MM\x00*", "tiff_pipe"), (b"GIF8", "gif"))
_PATTERN_CHARS = set("%*?[]{}")


def still_image_demuxer(path: Path | str) -> str | None:
    """The single-image demuxer for a file image2 claimed, or None (a pattern name, or not a known still)."""
    if _PATTERN_CHARS & set(Path(path).name):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp_pipe"
    return next((fmt for magic, fmt in _IMAGE_MAGIC if head.startswith(magic)), None)


# ---------------------------------------------------------------- which demuxer a probed file has
def _key(path: Path | str) -> str:
    return os.path.abspath(path)


def remember_demuxer(path: Path | str, demuxer: str) -> None:
    """Record the demuxer probe() found, so later commands over the same unchanged file force it."""
    try:
        st = os.stat(path)
    except OSError:
        return
    with _probed_lock:
        _probed[_key(path)] = (st.st_size, st.st_mtime_ns, demuxer)
        _probed.move_to_end(_key(path))
        while len(_probed) > _PROBED_MAX:
            _probed.popitem(last=False)


def known_demuxer(path: Path | str) -> str | None:
    """The demuxer probe() found for this file, if it has not changed since."""
    with _probed_lock:
        entry = _probed.get(_key(path))
    if entry is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    size, mtime_ns, demuxer = entry
    return demuxer if (st.st_size, st.st_mtime_ns) == (size, mtime_ns) else None


# ---------------------------------------------------------------- argument builders
def input_args(path: Path | str, demuxer: str | None, *options: str) -> list[str]:
    """The one way a command opens a file: `options` (-ss, -t, -stream_loop...) first, then only the `file`
    protocol, the demuxer forced and whitelisted (or, for a file never probed, the allowlist), then `-i`."""
    if demuxer is not None and demuxer not in ALLOWED_DEMUXERS:
        raise format_not_allowed(demuxer)
    forced = ["-format_whitelist", demuxer, "-f", demuxer] if demuxer else ["-format_whitelist", ALLOWED_WHITELIST]
    return [*options, "-protocol_whitelist", "file", *forced, "-i", str(path)]


def probe_args(path: Path | str, demuxer: str | None = None) -> list[str]:
    """ffprobe's input arguments (same rules as `input_args`; the demuxer is forced once it is known)."""
    return input_args(path, demuxer or known_demuxer(path))


def concat_input(list_path: Path, inner: Iterable[str]) -> list[str]:
    """The project's own concat list (media/concat_list.py writes it): `-safe 1` (plain relative names only)
    and the listed files' demuxers as the only ones the concat demuxer may open."""
    formats = sorted(set(inner))
    for fmt in formats:
        if fmt not in ALLOWED_DEMUXERS:
            raise format_not_allowed(fmt)
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(["concat", *formats]), "-f", "concat",
            "-safe", "1", "-i", str(list_path)]


def _guarded(segment: list[str], target: str) -> list[str]:
    if any(flag in segment for flag in _WHITELIST_FLAGS):
        return [*segment, "-i", target]  # built by concat_input / input_args already
    forced = segment[segment.index("-f") + 1] if "-f" in segment[:-1] else None
    if target == "-" or target.startswith("pipe:"):
        return [*segment, "-protocol_whitelist", "pipe", "-format_whitelist", forced or ALLOWED_WHITELIST,
                "-i", target]
    if forced is not None:  # a caller's own format: lavfi graphs, raw frames; concat only as concat_input
        if forced == "concat":
            raise MediaError("A concat list must be opened with media.inputs.concat_input.",
                             code="input_format_not_allowed")
        return [*segment, "-protocol_whitelist", "file", "-format_whitelist", forced, "-i", target]
    return input_args(target, known_demuxer(target), *segment)


def guard_inputs(args: Sequence[str]) -> list[str]:
    """`args` with every input opened safely (see the module docstring); output options are untouched."""
    out: list[str] = []
    segment: list[str] = []  # the options of the input being read, since the previous `-i <target>`
    i = 0
    while i < len(args):
        if args[i] == "-i" and i + 1 < len(args):
            out += _guarded(segment, args[i + 1])
            segment = []
            i += 2
            continue
        segment.append(args[i])
        i += 1
    return out + segment
