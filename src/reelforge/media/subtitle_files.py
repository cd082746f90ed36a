"""Subtitle files for burning and muxing: read SRT/VTT/ASS with pysubs2, style SRT/VTT into ASS, keep text literal.

Literal text: libass reads `{...}` as override tags and `\\N`, `\\n`, `\\h` as line breaks/spaces. Text from
SRT/VTT is therefore escaped for ASS: `{` and `}` become `\\{` `\\}` (libass escapes) and every backslash is
followed by U+2060 WORD JOINER (invisible, zero width) so that `\\N` typed by a user is shown as `\\N`.
The basic SRT/VTT tags `<b> <i> <u> <s>` still work; other markup (`<font>`, `<v Speaker>`, `<c.x>`, cue
timestamps) is dropped, and anything else in angle brackets is shown as written.

The look comes from `reelforge.captions.CaptionStyle` (turned into a pysubs2 style by the caller): sizes are
pixels of a 1080-line frame (the ASS script's PlayResY is 1080, so captions look the same at any output
size). None of it ever reaches an ffmpeg filter string: it is written into the .ass file by pysubs2.
"""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path
from typing import Literal

import pysubs2

from reelforge.config import Settings
from reelforge.errors import MediaError

SubtitleFormat = Literal["auto", "srt", "vtt", "ass"]
MAX_SUBTITLE_BYTES = 10 * 1024 * 1024
_BACKSLASH = "\ue000"  # stands in for user backslashes while pysubs2 parses
_WORD_JOINER = "\u2060"
_TAGS = {"b": ("\ue010", "\ue011"), "i": ("\ue012", "\ue013"), "u": ("\ue014", "\ue015"), "s": ("\ue016", "\ue017")}
_TAG_TO_ASS = {mark: f"{{\\{tag}{on}}}" for tag, marks in _TAGS.items() for mark, on in zip(marks, (1, 0),
                                                                                               strict=True)}
_TAG_RE = re.compile(r"<\s*(/?)\s*([bius])\s*>", re.IGNORECASE)
_DROPPED_MARKUP_RE = re.compile(r"</?\s*(font|c|v|lang|ruby|rt)(\s[^<>]*|\.[^<>]*)?>|<\d{1,2}:\d{2}[:.\d]*>",
                                re.IGNORECASE)


def escape_ass_text(text: str) -> str:
    """Plain text -> ASS event text that libass renders literally (newlines become `\\N`)."""
    text = text.replace("\\", "\\" + _WORD_JOINER).replace("{", "\\{").replace("}", "\\}")
    return text.replace("\r\n", "\n").replace("\n", "\\N")


def _literal_event_text(raw: str, *, wrap_chars: int | None, all_caps: bool, vtt: bool) -> str:
    text = raw.replace("\\N", "\n")  # pysubs2's newline marker; user backslashes are still placeholders
    text = _DROPPED_MARKUP_RE.sub("", text)
    text = _TAG_RE.sub(lambda m: _TAGS[m.group(2).lower()][1 if m.group(1) else 0], text)
    if vtt:
        text = html.unescape(text)
    if all_caps:
        text = text.upper()
    if wrap_chars:
        text = "\n".join(
            "\n".join(textwrap.wrap(line, wrap_chars, break_long_words=False, break_on_hyphens=False))
            or line for line in text.split("\n"))
    text = escape_ass_text(text.replace(_BACKSLASH, "\\"))
    for mark, tag in _TAG_TO_ASS.items():
        text = text.replace(mark, tag)
    return text


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_subtitle_text(path: Path) -> str:
    """A subtitle file's text (UTF-8, UTF-16 or cp1252); refused when it holds control characters (a binary
    file, or text no subtitle means), which would otherwise reach libass."""
    if path.stat().st_size > MAX_SUBTITLE_BYTES:
        raise MediaError("The subtitle file is larger than 10 MB.", code="subtitles_too_large")
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            break
    else:
        text = data.decode("cp1252", errors="replace")
    found = _CONTROL_RE.search(text)
    if found:
        raise MediaError(f"The subtitle file holds a control character (U+{ord(found.group()):04X}); it is not "
                         "SRT, WebVTT or ASS text.", code="unsupported_subtitles")
    return text


def detect_format(text: str, declared: SubtitleFormat = "auto") -> Literal["srt", "vtt", "ass"]:
    if declared != "auto":
        return declared
    try:
        found = pysubs2.formats.autodetect_format(text)
    except Exception as exc:  # pysubs2 raises several error types for unknown content
        raise MediaError("The subtitles are not SRT, WebVTT or ASS.", code="unsupported_subtitles") from exc
    mapping: dict[str, Literal["srt", "vtt", "ass"]] = {"srt": "srt", "vtt": "vtt", "ass": "ass", "ssa": "ass"}
    if found not in mapping:
        raise MediaError(f"Subtitles in {found!r} format are not supported; use SRT, WebVTT or ASS.",
                         code="unsupported_subtitles")
    return mapping[found]


def load_subtitles(text: str, fmt: Literal["srt", "vtt", "ass"]) -> pysubs2.SSAFile:
    """Parse subtitles; for SRT/VTT, event text is kept raw (backslashes as placeholders) for styling."""
    try:
        if fmt == "ass":
            subs = pysubs2.SSAFile.from_string(text, format_="ass")
        else:
            subs = pysubs2.SSAFile.from_string(text.replace("\\", _BACKSLASH), format_=fmt, keep_html_tags=True)
    except Exception as exc:
        raise MediaError(f"The {fmt.upper()} subtitles could not be parsed: {str(exc)[:200]}",
                         code="unsupported_subtitles") from exc
    subs.events = [e for e in subs.events if not e.is_comment and e.end > e.start]
    if not subs.events:
        raise MediaError("The subtitles contain no captions.", code="empty_subtitles")
    return subs


def styled_ass(subs: pysubs2.SSAFile, style: pysubs2.SSAStyle, video_w: int, video_h: int, *,
               wrap_chars: int | None = None, all_caps: bool = False, prefix: str = "",
               vtt: bool = False) -> pysubs2.SSAFile:
    """An ASS script for SRT/VTT events in `style`, laid out on a 1080-line canvas of the video's shape.

    `wrap_chars` wraps longer lines, `prefix` (an override block such as `{\\pos(x,y)}`, built by the
    caller from validated numbers) starts every event.
    """
    out = pysubs2.SSAFile()
    out.info["PlayResY"] = "1080"
    out.info["PlayResX"] = str(max(1, round(1080 * video_w / max(1, video_h))))
    out.info["ScaledBorderAndShadow"] = "yes"
    out.info["WrapStyle"] = "0"
    out.styles = {"Default": style}
    for e in subs.events:
        text = _literal_event_text(e.text, wrap_chars=wrap_chars, all_caps=all_caps, vtt=vtt)
        out.events.append(pysubs2.SSAEvent(start=e.start, end=e.end, style="Default", text=prefix + text))
    return out


def soft_track_srt(subs: pysubs2.SSAFile, fmt: Literal["srt", "vtt", "ass"]) -> str:
    """SubRip text for a soft subtitle track (ffmpeg converts it to mov_text/webvtt/subrip)."""
    if fmt == "ass":
        return subs.to_string("srt")  # ASS override tags are dropped, styling is the player's
    out = pysubs2.SSAFile()
    for e in subs.events:
        text = _DROPPED_MARKUP_RE.sub("", e.text)
        if fmt == "vtt":
            text = html.unescape(text)
        out.events.append(pysubs2.SSAEvent(start=e.start, end=e.end, text=text))
    # user backslashes stay placeholders while pysubs2 writes (it would read "\N" as a line break)
    return out.to_string("srt", keep_ssa_tags=True).replace(_BACKSLASH, "\\")


def check_burn_size(subs: pysubs2.SSAFile, video_s: float, settings: Settings, what: str = "The subtitles") -> None:
    """Refuse subtitles too heavy to burn onto `video_s` seconds of video: libass work grows with the cues and
    their text, so both are capped per second of video (settings, with floors for short clips)."""
    seconds = max(0.0, video_s)
    cues = len(subs.events)
    chars = sum(len(e.text) for e in subs.events)
    max_cues = max(settings.limits.min_subtitle_cues, round(settings.limits.max_subtitle_cues_per_s * seconds))
    max_chars = max(settings.limits.min_subtitle_chars, round(settings.limits.max_subtitle_chars_per_s * seconds))
    if cues > max_cues:
        raise MediaError(f"{what} have {cues} cues; at most {max_cues} are burned onto {seconds:.1f} s of video.",
                         code="subtitles_too_large")
    if chars > max_chars:
        raise MediaError(f"{what} hold {chars} characters of text; at most {max_chars} are burned onto "
                         f"{seconds:.1f} s of video.", code="subtitles_too_large")
