"""`caption`: burn SRT, WebVTT or ASS captions (a file/URL, or inline text) into a video.

SRT/VTT get the job's `style` (captions.CaptionStyle, the model every caption op shares; the fields a
job leaves out keep caption's own look, BURN_IN_DEFAULTS) and are written as an .ass file;
ASS files keep their own styles. The subtitle file is written into the work dir under a fixed, plain
name and passed to the `ass` filter through media/filters, so neither the user's file name nor any text
or style value can reach the filter graph. Fonts come from the worker's font dir (DejaVu by default).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from reelforge.captions import BURN_IN_DEFAULTS, CaptionStyle, ass_style, pos_prefix
from reelforge.media.encoders import EncoderChoice, Quality, VideoCodec, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output
from reelforge.media.filters import filter_expr
from reelforge.media.limits import probe_input
from reelforge.media.probe import require_video
from reelforge.media.subtitle_files import (
    SubtitleFormat,
    check_burn_size,
    detect_format,
    load_subtitles,
    read_subtitle_text,
    styled_ass,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES

DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


class SubtitleSource(Params):
    """Where subtitles come from: a reference (`subtitles`) or inline text (`subtitles_text`)."""

    subtitles: MediaRef | None = None
    subtitles_text: str | None = Field(None, max_length=2_000_000)
    format: SubtitleFormat = "auto"

    @model_validator(mode="after")
    def _one_source(self) -> SubtitleSource:
        if (self.subtitles is None) == (self.subtitles_text is None):
            raise ValueError("give exactly one of subtitles (a file or URL) or subtitles_text (inline)")
        if self.subtitles_text is not None and not self.subtitles_text.strip():
            raise ValueError("subtitles_text is empty")
        return self


class CaptionParams(SubtitleSource):
    input: MediaRef
    style: CaptionStyle = CaptionStyle()
    quality: Quality = "standard"
    codec: VideoCodec = "h264"


def subtitle_text(source: SubtitleSource, ctx: OpContext) -> str:
    if source.subtitles_text is not None:
        return source.subtitles_text
    assert source.subtitles is not None
    return read_subtitle_text(ctx.fetch(source.subtitles))


def font_dir(ctx: OpContext) -> Path:
    return ctx.settings.media.font_dir or DEFAULT_FONT_DIR


def burn_filter(ass_path: Path, fonts: Path) -> str:
    return filter_expr("ass", filename=ass_path, fontsdir=fonts)


def caption_args(video: Path, ass_path: Path, fonts: Path, out: Path, enc: tuple[str, ...],
                 has_audio: bool) -> list[str]:
    return ["-i", str(video), "-map", "0:v:0", *(["-map", "0:a:0", "-c:a", "copy"] if has_audio else []),
            "-vf", burn_filter(ass_path, fonts), *enc, "-movflags", "+faststart", str(out)]


@operation(
    "caption",
    params=CaptionParams,
    summary="Burn SRT/VTT (styled) or ASS captions into a video.",
    resources=ENCODES,
    timeout_s=3600,
    example={"input": "https://example.com/clip.mp4", "subtitles_text": "1\n00:00:00,000 --> 00:00:02,000\n"
             "Hello, world!\n", "style": {"font_size": 60, "position": "bottom", "outline": 3}},
)
def run(params: CaptionParams, ctx: OpContext) -> OpResult:
    ctx.stage("probing")
    video_path = ctx.fetch(params.input)
    info = probe_input(video_path, ctx.settings, params.input, "video")
    v = require_video(info)
    text = subtitle_text(params, ctx)
    fmt = detect_format(text, params.format)
    subs = load_subtitles(text, fmt)
    check_burn_size(subs, info.duration_s, ctx.settings)
    ass_path = ctx.temp_path("captions.ass")  # our own plain name: nothing of the user's is in the path
    if fmt == "ass":
        # burn the user's script verbatim (pysubs2 only validated it): libass understands more of ASS
        # (embedded fonts, unusual Format lines) than a parse/write round trip keeps
        ass_path.write_text(text, encoding="utf-8")
    else:
        style = params.style.with_defaults(BURN_IN_DEFAULTS)
        subs = styled_ass(subs, ass_style(style), v.width or 1920, v.height or 1080, vtt=fmt == "vtt",
                          wrap_chars=style.max_chars_per_line, all_caps=style.all_caps, prefix=pos_prefix(style))
        subs.save(str(ass_path), format_="ass")
    out = ctx.output_path("video", ".mp4")
    fonts = font_dir(ctx)

    def build(choice: EncoderChoice) -> list[str]:
        return caption_args(video_path, ass_path, fonts, out, choice.args, info.audio is not None)

    encode_with_fallback(build, ctx, params.quality, codec=params.codec, duration_s=info.duration_s,
                         stage="burning captions", span=(0.05, 1.0))
    ensure_file_output(out)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={"format": fmt, "captions": len(subs.events),
                                                  "encoder": ctx.notes.get("encoder")})
