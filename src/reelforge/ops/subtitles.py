"""`subtitles`: ASS (+ SRT, VTT) captions in a style, from timed words or from an existing subtitle file.

Input is either `words` inline, or `input`: a words.json (from transcribe, tts or align) or an SRT / VTT /
ASS file (its lines' times are shared among their words, so word styles work on it too). `style` is the
CaptionStyle every caption op takes: {"words": [...], "style": {"style": "karaoke", "max_words_per_line": 3}}.
The older flat spelling, {"words": [...], "style": "karaoke", "max_words_per_line": 3}, is still accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelforge.captions import (
    STYLE_FIELDS,
    CaptionStyle,
    Word,
    build_plain,
    build_subtitles,
    load_subs,
    save_subs,
    words_from_json,
    words_from_subs,
)
from reelforge.errors import MediaError
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.runtime import control_character_at

MAX_WORDS = 100_000
MAX_INPUT_BYTES = 20_000_000
SubtitleFormat = Literal["ass", "srt", "vtt"]
SUBTITLE_FORMATS: tuple[SubtitleFormat, ...] = ("ass", "srt", "vtt")


class WordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=200)
    start: float = Field(ge=0)
    end: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> WordIn:
        if self.end < self.start:
            raise ValueError(f"word {self.text!r} ends before it starts")
        return self


class SubtitlesParams(Params):
    style: CaptionStyle = Field(default_factory=CaptionStyle,
                                description="the look (also accepted flat: a style name and style fields here)")
    words: list[WordIn] | None = Field(default=None, max_length=MAX_WORDS, description="timed words")
    input: MediaRef | None = Field(default=None, description="words.json, .srt, .vtt or .ass")
    width: int = Field(default=1920, ge=16, le=8192, description="caption canvas (the video's size)")
    height: int = Field(default=1080, ge=16, le=8192)
    formats: list[SubtitleFormat] = Field(default_factory=lambda: list(SUBTITLE_FORMATS), min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _flat_style(cls, data: Any) -> Any:
        """The old spelling: style fields beside `words`, `style` a style name. Folded into `style`."""
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in data if k in STYLE_FIELDS and k != "style"}
        kind = data.get("style")
        if not flat and not isinstance(kind, str):
            return data
        if isinstance(kind, dict | CaptionStyle):
            raise ValueError("give the style fields either inside style or beside it, not both")
        rest = {k: v for k, v in data.items() if k not in flat and k != "style"}
        return {**rest, "style": {**flat, **({"style": kind} if kind is not None else {})}}

    @model_validator(mode="after")
    def _source(self) -> SubtitlesParams:
        if (self.words is None) == (self.input is None):
            raise ValueError("give either words or input (a words.json, SRT, VTT or ASS file)")
        if self.words is not None and not self.words:
            raise ValueError("words must not be empty")
        return self

    def caption_style(self) -> CaptionStyle:
        return self.style


def read_words(path: Path, breaks: set[int] | None = None) -> list[Word]:
    """Words from a words.json or any subtitle file pysubs2 reads (MediaError when neither).

    For subtitle files, the first word of each of their lines is added to `breaks`.
    """
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise MediaError("The subtitle/words file is too large.", code="too_large")
    raw = path.read_bytes()
    hit = control_character_at(raw.decode("utf-8", errors="replace"))
    if hit is not None:  # a binary file, or text no subtitle means (NUL crashes the writers' readers)
        raise MediaError(f"The subtitle/words file holds a control character ({hit}).", code="unsupported_subtitles")
    head = raw.lstrip()[:1]
    if path.suffix.lower() == ".json" or head in (b"[", b"{"):
        try:
            return words_from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise MediaError(f"The words file is not valid words.json: {exc}", code="bad_words_file") from exc
    try:
        return words_from_subs(load_subs(path), breaks)
    except ValueError as exc:
        raise MediaError(f"The input is not a readable SRT/VTT/ASS file ({exc}).", code="bad_subtitles") from exc


@operation(
    "subtitles",
    params=SubtitlesParams,
    summary="Styled captions (classic, karaoke, highlight, word_by_word, underline) as ASS, SRT and VTT.",
    timeout_s=300,
    example={"words": [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world!", "start": 0.45, "end": 0.9}],
             "style": {"style": "karaoke", "max_words_per_line": 4, "position": "bottom_center"}},
)
def run(params: SubtitlesParams, ctx: OpContext) -> OpResult:
    ctx.stage("reading")
    breaks: set[int] = set()
    if params.words is not None:
        words = sorted((Word(w.text, w.start, w.end) for w in params.words), key=lambda w: (w.start, w.end))
    else:
        assert params.input is not None
        words = read_words(ctx.fetch(params.input), breaks)  # already in time order
    if not words:
        raise MediaError("The input holds no words to caption.", code="no_words")
    ctx.progress(0.3, "building")
    style = params.caption_style()
    outputs: dict[str, Path] = {}
    plain = build_plain(words, style, breaks)
    events = len(plain)
    if "ass" in params.formats:
        subs = build_subtitles(words, style, (params.width, params.height), breaks)
        outputs["ass"] = save_subs(subs, ctx.output_path("captions", ".ass"))
        events = len(subs)
    for fmt in ("srt", "vtt"):
        if fmt in params.formats:
            outputs[fmt] = save_subs(plain, ctx.output_path("captions", f".{fmt}"))
    ctx.progress(1.0, "done")
    return OpResult(outputs=outputs, data={"words": len(words), "captions": len(plain),
                                           "events": events,
                                           "style": style.style})
